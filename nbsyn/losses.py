"""Adversarial losses and regularisers of thesis ch. 3, shared by the notebooks.

All take the discriminator's raw outputs (logits); D(x) = sigmoid(logit) where a probability is meant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("ns", "hinge", "ls", "wgan")


def _check(kind: str) -> None:
    if kind not in LOSSES:
        raise ValueError(f"unknown adversarial loss {kind!r}; choose one of {', '.join(LOSSES)}")


def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Discriminator loss on logits of real and fake samples.

    ns:    -E[log D(x)] - E[log(1 - D(G(z)))]                      (Eq. 3.5)
    hinge:  E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]               (standard form; Eq. 3.7 as printed swaps real/fake)
    ls:     1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2]                 (Eq. 3.6, on raw outputs)
    wgan:   E[D(G(z))] - E[D(x)]                                    (Eq. 3.8; add gradient_penalty)
    """
    _check(kind)
    if kind == "ns":  # log(1 - sigmoid(l)) = -softplus(l), log sigmoid(l) = -softplus(-l)
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    if kind == "ls":
        return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake**2).mean()
    return fake.mean() - real.mean()


def g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """Generator loss on logits of fake samples.

    ns: -E[log D(G(z))] (the non-saturating trick, Eq. 3.5); hinge and wgan: -E[D(G(z))];
    ls: 1/2 E[(D(G(z)) - 1)^2].
    """
    _check(kind)
    if kind == "ns":
        return F.softplus(-fake).mean()
    if kind == "ls":
        return 0.5 * ((fake - 1) ** 2).mean()
    return -fake.mean()


def gradient_penalty(discriminator, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP (Eq. 3.9): E[(||grad D(x_hat)||_2 - 1)^2], x_hat uniform on lines between real and fake."""
    alpha = torch.rand([real.shape[0]] + [1] * (real.dim() - 1), device=real.device)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): E[||grad_x D(x)||^2] on real data; multiply by gamma / 2.

    ``real`` must have requires_grad=True before it was passed through D.
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.flatten(1).pow(2).sum(1).mean()
