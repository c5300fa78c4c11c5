"""The SPADE-style baseline discriminator that OASIS replaces (thesis Sec. 4.2.1, L1050-1054).

Two PatchGAN discriminators at two image scales, each taking the channel-wise concatenation of the
image and the one-hot label map and producing a map of real/fake scores. Trained with the hinge
loss (L826) and, for the generator, the discriminator feature-matching loss (Eq. 3.15, L935-937;
lambda_FM = 10 in NVlabs/SPADE). The VGG perceptual loss of Eq. 4.1 needs ImageNet weights that
are not available offline; the comparison in the thesis that matches ours is "SPADE+ without VGG"
(Table 4.1, L1139; Table 4.2 "3D noise, no VGG", L1163).

Architecture details follow NVlabs/SPADE [CODE]: 4x4 convs, stride 2 except the last two layers,
spectral norm + instance norm on the inner layers, LeakyReLU(0.2), width doubling up to 8 * ndf;
the second discriminator sees the input downsampled by a 3x3 average pool with stride 2.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from nbsyn.models.oasis import one_hot, sample_noise, set_requires_grad


class PatchDiscriminator(nn.Module):
    """PatchGAN with ``n_layers`` strided layers; returns every intermediate feature map (for FM)."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 4):
        super().__init__()
        layers = [nn.Sequential(nn.Conv2d(in_channels, ndf, 4, stride=2, padding=2), nn.LeakyReLU(0.2))]
        nf = ndf
        for n in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, ndf * 8)
            stride = 1 if n == n_layers - 1 else 2
            layers.append(nn.Sequential(
                spectral_norm(nn.Conv2d(nf_prev, nf, 4, stride=stride, padding=2, bias=False)),  # IN cancels a bias
                nn.InstanceNorm2d(nf, affine=False),
                nn.LeakyReLU(0.2),
            ))
        layers.append(nn.Conv2d(nf, 1, 4, stride=1, padding=2))  # one real/fake score per patch
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


class MultiScaleDiscriminator(nn.Module):
    """``num_d`` PatchGANs on the image+label concatenation at successively halved resolutions."""

    def __init__(self, num_classes: int, ndf: int = 64, n_layers: int = 4, num_d: int = 2):
        super().__init__()
        self.num_classes = num_classes
        self.discriminators = nn.ModuleList(PatchDiscriminator(3 + num_classes, ndf, n_layers) for _ in range(num_d))

    def forward(self, images: torch.Tensor, labels_onehot: torch.Tensor) -> list[list[torch.Tensor]]:
        if labels_onehot.shape[1] != self.num_classes or labels_onehot.shape[-2:] != images.shape[-2:]:
            raise ValueError(f"need a one-hot label map with {self.num_classes} channels and the image's size")
        x = torch.cat([images, labels_onehot], dim=1)  # the label map is an *input* (L1050)
        outputs = []
        for i, d in enumerate(self.discriminators):
            if i > 0:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(d(x))
        return outputs


def build_baseline_discriminator(cfg, num_classes: int) -> MultiScaleDiscriminator:
    """The SPADE-style discriminator of a preset (``ndf``, ``n_layers_d``, ``num_d``)."""
    return MultiScaleDiscriminator(num_classes, cfg["ndf"], cfg["n_layers_d"], cfg["num_d"])


def hinge_d_loss(out_real: list[list[torch.Tensor]], out_fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Hinge loss for D (L826): E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))], averaged over scales."""
    terms = [F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean() for r, f in zip(out_real, out_fake)]
    return torch.stack(terms).mean()


def hinge_g_loss(out_fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Hinge loss for G: -E[D(G(z))], averaged over scales."""
    return torch.stack([-f[-1].mean() for f in out_fake]).mean()


def feature_matching_loss(out_real: list[list[torch.Tensor]], out_fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Eq. 3.15: sum over D layers of ||D^i(x_real) - D^i(x_gen)||_1 (means), averaged over scales."""
    total = 0.0
    for r, f in zip(out_real, out_fake):
        for fr, ff in zip(r[:-1], f[:-1]):  # intermediate features only, not the final scores
            total = total + F.l1_loss(ff, fr.detach())
    return total / len(out_real)


def make_baseline_step(G: nn.Module, D: MultiScaleDiscriminator, opt_g: torch.optim.Optimizer,
                       opt_d: torch.optim.Optimizer, sample_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
                       *, lambda_fm: float = 10.0, ema=None,
                       noise_generator: torch.Generator | None = None, precision=None) -> Callable[[int], dict]:
    """One iteration of the same generator against the SPADE-style D: G step, D step, EMA.

    ``precision`` (``nbsyn.amp.Precision``): autocast + fp16 loss scaling; None = fp32."""
    from nbsyn.amp import Precision

    num_classes = D.num_classes
    prec = precision or Precision(False)

    def step(_: int) -> dict[str, float]:
        real, labels = sample_batch()
        onehot = one_hot(labels, num_classes)
        b, _, h, w = real.shape

        set_requires_grad(D, False)
        with prec.autocast():
            fake = G(onehot, sample_noise(b, G.z_dim, (h, w), noise_generator, real.device))
            out_fake = D(fake, onehot)
            adv = hinge_g_loss(out_fake).float()
            fm = torch.zeros(())
            if lambda_fm > 0:  # features of the real image with the same label map (paired supervision)
                with torch.no_grad():
                    out_real = D(real, onehot)
                fm = feature_matching_loss(out_real, out_fake).float()
        loss_g = adv + lambda_fm * fm  # Eq. 4.1 without the VGG term
        opt_g.zero_grad(set_to_none=True)
        prec.backward(loss_g)
        prec.step(opt_g)
        set_requires_grad(D, True)

        with torch.no_grad(), prec.autocast():
            fake = G(onehot, sample_noise(b, G.z_dim, (h, w), noise_generator, real.device))
        with prec.autocast():
            outs = D(torch.cat([real, fake.to(real.dtype)]), torch.cat([onehot, onehot]))
            out_real = [[t[:b] for t in scale] for scale in outs]
            out_fake = [[t[b:] for t in scale] for scale in outs]
            loss_d = hinge_d_loss(out_real, out_fake).float()
        opt_d.zero_grad(set_to_none=True)
        prec.backward(loss_d)
        prec.step(opt_d)
        prec.update()
        if ema is not None:
            ema.update(G)
        return {"loss_g": loss_g.item(), "loss_d": loss_d.item(), "g_adv": adv.item(), "g_fm": fm.item()}

    return step
