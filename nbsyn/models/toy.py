"""Notebook 00, GAN foundations (thesis ch. 3): a 2-D mixture of Gaussians and a small DCGAN.

The 2-D problem makes mode collapse measurable: samples near a mode are "high quality", and the
number of modes that receive samples says how much of the distribution the generator covers.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nbsyn.losses import d_loss, g_loss, gradient_penalty, r1_penalty

# Hyperparameters per scale. The `paper` preset is the DCGAN paper's set-up (Radford et al. 2016:
# 64x64, z = 100, 64 base channels, Adam lr 2e-4, beta1 = 0.5, batch 128), the architecture the
# thesis' background chapter builds on; ch. 3 itself has no experiment of its own.
# Training length is a step count (iterations, toy_steps); time_budget_s is only a guard against a
# stuck run (None: no guard) - a run it cuts is marked incomplete, never reported as a result.
PRESETS = {
    "smoke": dict(seed=0, iterations=30, image_size=16, batch_size=16, dataset="faces", time_budget_s=None,
                  n_train=64, z_dim=32, width=16, lr=2e-4, beta1=0.5, ema_decay=0.9, loss="ns",
                  toy_steps=30, toy_batch=64, toy_seeds=1, toy_lr=1e-3, snapshot_every=10, n_eval=16),
    "cpu": dict(seed=0, iterations=2000, image_size=32, batch_size=32, dataset="faces", time_budget_s=None,
                n_train=2048, z_dim=64, width=32, lr=2e-4, beta1=0.5, ema_decay=0.995, loss="ns",
                toy_steps=1000, toy_batch=256, toy_seeds=2, toy_lr=1e-3, snapshot_every=500, n_eval=64),
    "gpu": dict(seed=0, iterations=20000, image_size=64, batch_size=64, dataset="faces", time_budget_s=None,
                n_train=20000, z_dim=100, width=64, lr=2e-4, beta1=0.5, ema_decay=0.999, loss="ns",
                toy_steps=5000, toy_batch=512, toy_seeds=5, toy_lr=1e-3, snapshot_every=2000, n_eval=500),
    "paper": dict(seed=0, iterations=50000, image_size=64, batch_size=128, dataset="faces", time_budget_s=None,
                  n_train=50000, z_dim=100, width=64, lr=2e-4, beta1=0.5, ema_decay=0.999, loss="ns",
                  toy_steps=10000, toy_batch=512, toy_seeds=5, toy_lr=1e-3, snapshot_every=5000, n_eval=2000),
}


# ----------------------------------------------------------------------------- 2-D mixture of Gaussians
def ring_modes(n_modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    angles = torch.arange(n_modes, dtype=torch.float32) * (2 * math.pi / n_modes)
    return radius * torch.stack([angles.cos(), angles.sin()], 1)


def sample_ring(n: int, std: float = 0.05, modes: torch.Tensor | None = None, generator=None) -> torch.Tensor:
    """n points from an equal mixture of Gaussians centred on ``modes`` (default: 8 on a ring)."""
    modes = ring_modes() if modes is None else modes
    idx = torch.randint(0, modes.shape[0], (n,), generator=generator)
    return modes[idx] + std * torch.randn(n, 2, generator=generator)


def mode_coverage(samples: torch.Tensor, modes: torch.Tensor | None = None, std: float = 0.05,
                  min_share: float = 0.01) -> dict:
    """The standard 2-D GAN scores: a sample is high quality if within 3 std of a mode; a mode is
    covered if it receives at least ``min_share`` of the samples as high-quality ones."""
    modes = ring_modes() if modes is None else modes
    dist = torch.cdist(samples, modes)
    nearest_d, nearest = dist.min(1)
    good = nearest_d < 3 * std
    counts = torch.bincount(nearest[good], minlength=modes.shape[0])
    return {"modes_covered": int((counts >= min_share * samples.shape[0]).sum()),
            "high_quality": float(good.float().mean()), "counts": counts.tolist()}


def mlp(sizes: list[int], spectral: bool = False, final_act: nn.Module | None = None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(a, b)
        layers.append(nn.utils.parametrizations.spectral_norm(linear) if spectral else linear)
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.2))
    if final_act is not None:
        layers.append(final_act)
    return nn.Sequential(*layers)


def toy_gan(z_dim: int = 2, hidden: int = 128, spectral_norm: bool = False) -> tuple[nn.Module, nn.Module]:
    """MLP generator z -> R^2 and discriminator R^2 -> logit (3 hidden layers each)."""
    g = mlp([z_dim, hidden, hidden, hidden, 2])
    d = mlp([2, hidden, hidden, hidden, 1], spectral=spectral_norm)
    return g, d


# ----------------------------------------------------------------------------- one GAN step (Algorithm 1)
def adversarial_step(g: nn.Module, d: nn.Module, opt_g, opt_d, real: torch.Tensor, z: torch.Tensor,
                     loss: str = "ns", r1_gamma: float = 0.0, gp_weight: float = 0.0) -> dict:
    """One D step then one G step (thesis Algorithm 1, L789-805), with optional R1 or gradient penalty.

    Returns the losses and the mean D(x), D(G(z)) (as probabilities for ns, raw outputs otherwise).
    """
    # --- discriminator: L_D (+ gamma/2 * R1) (+ lambda * GP)
    real = real.requires_grad_(r1_gamma > 0)
    fake = g(z).detach()
    real_logits, fake_logits = d(real), d(fake)
    loss_d = d_loss(loss, real_logits, fake_logits)
    if r1_gamma > 0:
        loss_d = loss_d + 0.5 * r1_gamma * r1_penalty(real_logits, real)
    if gp_weight > 0:
        loss_d = loss_d + gp_weight * gradient_penalty(d, real, fake)
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    # --- generator: L_G on a fresh pass through the updated D
    fake_logits_g = d(g(z))
    loss_g = g_loss(loss, fake_logits_g)
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    to_d = torch.sigmoid if loss == "ns" else (lambda t: t)
    return {"loss_d": loss_d.item(), "loss_g": loss_g.item(),
            "D(x)": to_d(real_logits.detach()).mean().item(), "D(G(z))": to_d(fake_logits.detach()).mean().item()}


TOY_VARIANTS = {
    "NS": dict(loss="ns"),
    "hinge": dict(loss="hinge"),
    "LS": dict(loss="ls"),
    "WGAN-GP": dict(loss="wgan", gp_weight=0.1),
    "NS + R1": dict(loss="ns", r1_gamma=0.1),
    "NS + SN": dict(loss="ns", spectral_norm=True),
}


def train_toy(variant: str, steps: int, seed: int, batch: int = 256, lr: float = 1e-3, z_dim: int = 2,
              progress: bool = False, snapshots: tuple[int, ...] = (), time_budget_s: float | None = None) -> dict:
    """Train one 2-D GAN variant of TOY_VARIANTS; returns final samples, history and snapshots."""
    from nbsyn.train import fit

    if variant not in TOY_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(TOY_VARIANTS)}")
    opts = dict(TOY_VARIANTS[variant])
    torch.manual_seed(seed)
    g, d = toy_gan(z_dim, spectral_norm=opts.pop("spectral_norm", False))
    betas = (0.5, 0.999) if opts["loss"] != "wgan" else (0.5, 0.9)
    opt_g, opt_d = torch.optim.Adam(g.parameters(), lr, betas=betas), torch.optim.Adam(d.parameters(), lr, betas=betas)
    gen = torch.Generator().manual_seed(seed)
    fixed_z = torch.randn(2000, z_dim, generator=gen)
    shots = {}

    def step(i):
        if i in snapshots:
            with torch.no_grad():
                shots[i] = g(fixed_z)
        return adversarial_step(g, d, opt_g, opt_d, sample_ring(batch, generator=gen), torch.randn(batch, z_dim, generator=gen), **opts)

    history = fit(step, steps, {}, desc=variant, progress=progress, time_budget_s=time_budget_s)
    with torch.no_grad():
        samples = g(fixed_z)
    shots[history.steps] = samples
    return {"samples": samples, "history": history, "snapshots": shots, "generator": g, "discriminator": d}


# ----------------------------------------------------------------------------- DCGAN (Radford et al. 2016)
class DCGANGenerator(nn.Module):
    """z -> 4x4 (8w channels) -> ... -> image_size (3 channels), ConvTranspose + BN + ReLU, tanh out."""

    def __init__(self, z_dim: int = 100, width: int = 64, image_size: int = 64):
        super().__init__()
        n_up = int(math.log2(image_size)) - 2
        if 2 ** (n_up + 2) != image_size or n_up < 1:
            raise ValueError(f"image_size must be a power of two >= 8, got {image_size}")
        chans = [width * 2 ** (n_up - 1 - k) for k in range(n_up)]  # e.g. 512, 256, 128, 64 at 64 px
        layers = [nn.ConvTranspose2d(z_dim, chans[0], 4, 1, 0, bias=False), nn.BatchNorm2d(chans[0]), nn.ReLU(True)]
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(chans[-1], 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.z_dim = z_dim
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


class DCGANDiscriminator(nn.Module):
    """image -> ... -> 4x4 (8w channels) -> 1 logit; strided conv + BN + LeakyReLU(0.2)."""

    def __init__(self, width: int = 64, image_size: int = 64):
        super().__init__()
        n_down = int(math.log2(image_size)) - 2
        chans = [width * 2**k for k in range(n_down)]
        layers = [nn.Conv2d(3, chans[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(chans[-1], 1, 4, 1, 0, bias=False)]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02), BN weights N(1, 0.02), BN bias 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
