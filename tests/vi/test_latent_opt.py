import pytest
import torch

from varbook.vi.latent_opt import optimize_latents


def test_batch_of_quadratics_reaches_each_optimum():
    # P = 64 problems (a vectorised batch),, each (lam - c_p)^T H_p (lam - c_p) with its own positive-definite H_p
    g = torch.Generator().manual_seed(0)
    c = torch.randn(64, 3, generator=g, dtype=torch.float64)
    root = torch.randn(64, 3, 3, generator=g, dtype=torch.float64)
    H = 0.05 * root @ root.transpose(1, 2) + torch.eye(3, dtype=torch.float64)  # well conditioned

    def loss(lam):
        diff = (lam - c).unsqueeze(-1)
        return (diff.transpose(1, 2) @ H @ diff).reshape(64)

    (lam,), hist = optimize_latents(torch.zeros(64, 3, dtype=torch.float64), loss, 2000, 0.05)
    (lam,), hist2 = optimize_latents(lam, loss, 2000, 0.002)  # Adam at a fixed lr hovers ~lr around it
    torch.testing.assert_close(lam, c, atol=1e-3, rtol=0)
    assert hist2["loss"][-1] < 1e-5 * hist["loss"][0]


def test_problems_are_independent():
    c = torch.tensor([[1.0], [5.0]])
    (both,), _ = optimize_latents(torch.zeros(2, 1), lambda x: ((x - c) ** 2).sum(-1), 20, 0.1)
    (one,), _ = optimize_latents(torch.zeros(1, 1), lambda x: ((x - c[:1]) ** 2).sum(-1), 20, 0.1)
    torch.testing.assert_close(both[:1], one)


def test_zero_lr_leaves_latents_and_inputs_alone():
    x0 = torch.ones(3)
    (x,), _ = optimize_latents(x0, lambda x: (x**2).sum(), 5, 0.0)
    assert torch.equal(x, x0)
    (x,), _ = optimize_latents(x0, lambda x: (x**2).sum(), 5, 0.1)
    assert torch.equal(x0, torch.ones(3)) and not torch.equal(x, x0)


def test_bad_input():
    with pytest.raises(ValueError, match="steps"):
        optimize_latents(torch.zeros(2), lambda x: x.sum(), 0, 0.1)
    with pytest.raises(ValueError, match="learning rate"):
        optimize_latents(torch.zeros(2), lambda x: x.sum(), 1, -1.0)
    with pytest.raises(ValueError, match="floating"):
        optimize_latents(torch.zeros(2, dtype=torch.long), lambda x: x.sum(), 1, 0.1)


def test_maximize_climbs_the_loss():
    c = torch.tensor([2.0, -1.0])
    (x,), hist = optimize_latents(torch.zeros(2), lambda x: -((x - c) ** 2), 500, 0.1, maximize=True)
    torch.testing.assert_close(x, c, atol=1e-2, rtol=0)
    assert hist["loss"][-1] > hist["loss"][0]
