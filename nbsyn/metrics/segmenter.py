"""The papers' mIoU protocol at small scale: train a segmenter, then score label maps with it.

OASIS measures how well generated images respect their label maps by segmenting them with a
network trained on real data and comparing with the input label maps (L1123). OSMIS trains the
segmenter on generated pairs and tests on the real image. Both use these two functions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nbsyn.data.augment import PairedAugment
from nbsyn.data.dataset import IGNORE_INDEX, check_images, check_labels
from nbsyn.metrics.miou import confusion_matrix, scores_from_confusion
from nbsyn.nn.unet import UNet


def train_segmenter(images: torch.Tensor, labels: torch.Tensor, num_classes: int, steps: int, seed: int = 0,
                    batch_size: int = 8, augment: bool = True, width: int = 16, lr: float = 2e-3,
                    device="cpu", progress: bool = False) -> UNet:
    """Train a small U-Net with cross-entropy (Adam) on (N, 3, H, W) images and (N, H, W) labels."""
    check_images(images)
    check_labels(labels, num_classes, ignore_index=IGNORE_INDEX)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = UNet(3, num_classes, width=width, depth=3).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    step = make_segmenter_step(net, opt, images, labels, gen, batch_size, augment, device)
    from tqdm.auto import trange

    for i in trange(steps, desc="segmenter", disable=not progress, mininterval=1.0):
        step(i)
    return net.eval()


def make_segmenter_step(net: torch.nn.Module, opt: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
                        generator: torch.Generator, batch_size: int = 8, augment: bool = True, device="cpu"):
    """One cross-entropy step on a random (flip + zoom augmented) batch, as ``step(i) -> {"loss": ...}``."""
    aug = PairedAugment(flip=True, zoom=(1.0, 1.3)) if augment else None

    def step(_: int) -> dict[str, float]:
        net.train()
        idx = torch.randint(0, images.shape[0], (batch_size,), generator=generator)
        x, y = images[idx], labels[idx]
        if aug is not None:
            x, y = aug(x, y, generator)
        loss = F.cross_entropy(net(x.to(device)), y.to(device), ignore_index=IGNORE_INDEX)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    return step


@torch.no_grad()
def segment(segmenter: torch.nn.Module, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    device = next(segmenter.parameters()).device
    segmenter.eval()
    return torch.cat([segmenter(images[i:i + batch_size].to(device)).argmax(1).cpu()
                      for i in range(0, images.shape[0], batch_size)])


def segmentation_scores(segmenter: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                        num_classes: int) -> dict:
    """{'miou', 'accuracy', 'per_class_iou'} of the segmenter's prediction on ``images`` vs ``labels``."""
    pred = segment(segmenter, images)
    return scores_from_confusion(confusion_matrix(pred, labels, num_classes))
