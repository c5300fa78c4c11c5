"""Speed changes that must not change the maths: bit-identical outputs and gradients."""

import pytest
import torch

from nbsyn.models import oasis as O
from nbsyn.nn import spade
from nbsyn.nn.spade import upsample2x


def upsample2x_broadcast(x):
    """The previous implementation (broadcast + reshape; autograd sums the 2x2 blocks)."""
    b, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (4, 64, 8, 8), (1, 1, 1, 1), (3, 16, 7, 16)])
def test_upsample2x_matches_broadcast_and_interpolate_bitwise(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g) * 1e3
    grad = torch.randn(shape[0], shape[1], 2 * shape[2], 2 * shape[3], generator=g) * 1e3
    outs = []
    for fn in (upsample2x, upsample2x_broadcast):
        xi = x.clone().requires_grad_(True)
        y = fn(xi)
        (gx,) = torch.autograd.grad(y, xi, grad)
        outs.append((y.detach(), gx))
    assert torch.equal(outs[0][0], outs[1][0])
    assert torch.equal(outs[0][1], outs[1][1])  # same summation order -> same bits
    assert torch.equal(outs[0][0], torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))
    # hand-computed: the gradient of a pixel is the sum of its 2x2 block
    assert torch.allclose(outs[0][1], torch.nn.functional.avg_pool2d(grad, 2) * 4, rtol=1e-5, atol=1e-2)


def test_upsample2x_double_backward_matches():
    x0 = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    res = []
    for fn in (upsample2x, upsample2x_broadcast):
        x = x0.clone().requires_grad_(True)
        (g,) = torch.autograd.grad((fn(x) ** 3).sum(), x, create_graph=True)
        (gg,) = torch.autograd.grad(g.square().sum(), x)
        res.append(gg)
    assert torch.equal(res[0], res[1])


def _oasis_grads(monkeypatch, fn):
    monkeypatch.setattr(O, "upsample2x", fn)
    torch.manual_seed(0)
    G = O.OASISGenerator(4, z_dim=8, channels=4, num_res_blocks=3, spade_hidden=8)
    D = O.OASISDiscriminator(4, channels=4, num_res_blocks=3)
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (2, 16, 16), generator=g)
    noise = O.sample_noise(2, 8, 16, g)
    fake = G(O.one_hot(labels, 4), noise)
    logits = D(fake)
    loss = O.g_loss(logits, labels, O.class_weights(labels, 4))
    loss.backward()
    return fake.detach(), logits.detach(), [p.grad.clone() for p in [*G.parameters(), *D.parameters()]]


def test_oasis_models_give_identical_outputs_and_gradients(monkeypatch):
    new = _oasis_grads(monkeypatch, spade.upsample2x)
    old = _oasis_grads(monkeypatch, upsample2x_broadcast)
    assert torch.equal(new[0], old[0]) and torch.equal(new[1], old[1])
    assert len(new[2]) == len(old[2]) and all(torch.equal(a, b) for a, b in zip(new[2], old[2]))
