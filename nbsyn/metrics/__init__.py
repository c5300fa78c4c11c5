"""Metrics. FID, SIFID and LPIPS need pretrained weights from the torch hub cache and report
'unavailable' without them; everything else always runs."""

from nbsyn.metrics.base import FETCH_HINT, MetricResult, unavailable
from nbsyn.metrics.diversity import lpips_diversity, msssim_diversity, nn_distance
from nbsyn.metrics.fid import fid, frechet_distance, gaussian_stats, sifid
from nbsyn.metrics.lpips import lpips_available, lpips_distance
from nbsyn.metrics.miou import confusion_matrix, mean_iou_over, miou_and_accuracy, rare_classes, scores_from_confusion
from nbsyn.metrics.msssim import ms_ssim
from nbsyn.metrics.segmenter import segment, segmentation_scores, train_segmenter
from nbsyn.metrics.weights import WEIGHTS, is_cached, weight_path

__all__ = [
    "FETCH_HINT", "MetricResult", "WEIGHTS", "confusion_matrix", "fid", "frechet_distance", "gaussian_stats",
    "is_cached", "lpips_available", "lpips_distance", "lpips_diversity", "mean_iou_over", "miou_and_accuracy", "ms_ssim",
    "msssim_diversity", "nn_distance", "rare_classes", "scores_from_confusion", "segment", "segmentation_scores", "sifid",
    "train_segmenter", "unavailable", "weight_path",
]
