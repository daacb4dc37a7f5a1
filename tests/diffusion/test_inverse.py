import pytest
import torch

from varbook.diffusion import DiscreteVP, Field, GaussianMixture, sample_ddim
from varbook.diffusion.inverse import (
    dps,
    noisy_measurements,
    red_diff,
    red_diff_gradient,
    red_diff_weight,
    step_indices,
)
from varbook.imaging import Inpainting, SuperResolution


def test_step_indices():
    k = step_indices(10, 1000)
    assert k.tolist() == list(range(900, -1, -100))
    assert step_indices(10, 1000, "ascending").tolist() == list(range(0, 1000, 100))
    r = step_indices(10, 1000, "random", torch.Generator().manual_seed(0))
    assert sorted(r.tolist()) == list(range(0, 1000, 100)) and r.tolist() != k.tolist()


def test_gradient_matches_autograd_of_the_stated_surrogate():
    g = torch.Generator().manual_seed(0)
    op = SuperResolution(8, 2)
    mu = torch.randn(3, 64, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.randn(3, 16, dtype=torch.float64, generator=g)
    eps_hat, eps = (
        torch.randn(3, 64, dtype=torch.float64, generator=g),
        torch.randn(3, 64, dtype=torch.float64, generator=g),
    )
    lam, w = 0.25, torch.tensor(1.7, dtype=torch.float64)
    surrogate = (0.5 * ((y - op(mu)) ** 2).mean(1) + lam * w * ((eps_hat - eps).detach() * mu).mean(1)).sum()
    (auto,) = torch.autograd.grad(surrogate, mu)
    torch.testing.assert_close(red_diff_gradient(mu.detach(), y, op, eps_hat, eps, lam, w), auto)


def test_weightings():
    a, s = torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.8, dtype=torch.float64)
    assert float(red_diff_weight(a, s)) == pytest.approx(0.8 / 0.6)
    assert float(red_diff_weight(a, s, "constant")) == 1.0
    assert float(red_diff_weight(a, s, "clip")) == 1.0


class Zero(Field):
    kind = "eps"

    def __init__(self):
        self.schedule = DiscreteVP()

    def predict(self, x, t):
        return torch.zeros_like(x)


def test_without_the_prior_red_diff_fits_the_measurements():
    g = torch.Generator().manual_seed(1)
    op = Inpainting.random(8, 0.5, g)
    x = torch.randn(4, 64, dtype=torch.float64, generator=g)
    y = op(x)
    out = red_diff(Zero(), op, y, n_steps=200, lam=0.0, lr=0.05, generator=g)
    torch.testing.assert_close(op(out), y, atol=1e-3, rtol=0)
    torch.testing.assert_close(
        out[:, ~op.mask], torch.zeros_like(out[:, ~op.mask])
    )  # never-observed pixels stay at A+y


def test_red_diff_approaches_the_posterior_mean_of_a_gaussian_prior():
    g = torch.Generator().manual_seed(2)
    prior = GaussianMixture(torch.ones(1), torch.zeros(1, 16), (0.5 * torch.eye(16) + 0.3)[None])
    op = Inpainting.random(4, 0.5, g)
    x = prior.sample(200, g)
    y = noisy_measurements(op, x, 0.05, g)
    oracle = prior.posterior_mean(op.matrix(), y, 0.05)
    out = red_diff(prior.field(DiscreteVP()), op, y, n_steps=100, generator=g)
    zero_fill = op.pseudo_inverse(y)
    # the Dirac-limit fit is not the posterior mean, but the prior pulls it well towards it from A+y
    assert ((out - oracle) ** 2).mean() < 0.75 * ((zero_fill - oracle) ** 2).mean()
    assert ((out - x) ** 2).mean() < ((zero_fill - x) ** 2).mean()


def test_dps_without_guidance_is_ancestral_sampling():
    field = GaussianMixture.ring(4, 1.0, 0.3, dim=4).field(DiscreteVP())
    op = Inpainting(torch.tensor([1, 0, 1, 1], dtype=torch.bool))
    y = torch.zeros(5, 3, dtype=torch.float64)
    x = torch.randn(5, 4, dtype=torch.float64)
    ts = torch.cat([(step_indices(20).double() + 1) / 1000, torch.zeros(1, dtype=torch.float64)])
    a = dps(field, op, y, n_steps=20, zeta=0.0, x=x, generator=torch.Generator().manual_seed(3))
    b = sample_ddim(field, x, ts, eta=1.0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)


def test_bad_input():
    with pytest.raises(ValueError, match="order"):
        step_indices(10, order="sideways")
    with pytest.raises(ValueError, match="weighting"):
        red_diff_weight(torch.tensor(1.0), torch.tensor(1.0), "cubic")
    with pytest.raises(ValueError, match="n_steps"):
        step_indices(0)
    with pytest.raises(ValueError, match="zeta"):
        dps(Zero(), SuperResolution(4, 2), torch.zeros(1, 4), zeta=-1.0)
    with pytest.raises(ValueError, match="lam"):
        red_diff(Zero(), SuperResolution(4, 2), torch.zeros(1, 4), lam=-1.0)
    with pytest.raises(ValueError, match="shape"):
        red_diff(Zero(), SuperResolution(4, 2), torch.zeros(1, 5))
