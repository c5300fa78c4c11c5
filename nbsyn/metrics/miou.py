"""Segmentation scores from a confusion matrix: mIoU and pixel accuracy.

IoU_c = TP_c / (TP_c + FP_c + FN_c); mIoU averages over the classes that occur in the target or
the prediction (a class absent from both has no defined IoU and is left out).
"""

from __future__ import annotations

import torch

from nbsyn.data.dataset import IGNORE_INDEX


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(C, C) counts; row = true class, column = predicted class. Ignored pixels do not count."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    keep = target != ignore_index
    t, p = target[keep].long(), pred[keep].long()
    if t.numel() and (t.max() >= num_classes or p.max() >= num_classes or t.min() < 0 or p.min() < 0):
        raise ValueError(f"class ids must be in [0, {num_classes - 1}]")
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).view(num_classes, num_classes)


def scores_from_confusion(cm: torch.Tensor) -> dict:
    cm = cm.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    present = union > 0
    iou = torch.where(present, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    return {
        "miou": float(iou[present].mean()) if present.any() else float("nan"),
        "accuracy": float(tp.sum() / cm.sum()) if cm.sum() > 0 else float("nan"),
        "per_class_iou": iou.tolist(),
    }


def miou_and_accuracy(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                      ignore_index: int = IGNORE_INDEX) -> dict:
    """{'miou', 'accuracy', 'per_class_iou'} for predicted vs. true label maps."""
    return scores_from_confusion(confusion_matrix(pred, target, num_classes, ignore_index))


def rare_classes(labels: torch.Tensor, num_classes: int, fraction: float = 1 / 3) -> list[int]:
    """The ``fraction`` of classes with the smallest pixel share in ``labels`` (rarest first).

    Issue 17's "rare classes": the bottom third by pixel frequency, as in long-tailed benchmarks.
    Classes that never occur count as rarest; ignored pixels are not counted.
    """
    keep = labels[labels != IGNORE_INDEX].long()
    share = torch.bincount(keep, minlength=num_classes)[:num_classes].double()
    count = max(1, int(num_classes * fraction))
    return share.argsort(stable=True)[:count].tolist()


def mean_iou_over(per_class_iou, classes) -> float:
    """Mean IoU over ``classes``, skipping those whose IoU is undefined (absent from target and prediction)."""
    values = [per_class_iou[c] for c in classes if per_class_iou[c] == per_class_iou[c]]  # drop NaN
    return float(sum(values) / len(values)) if values else float("nan")
