import math

import pytest
import torch

from varbook.diffusion import GaussianMixture, VPCosine, VPLinear


def test_score_is_the_gradient_of_the_log_density():
    mix = GaussianMixture(
        torch.tensor([0.2, 0.5, 0.3]),
        torch.tensor([[0.0, 1.0], [2.0, -1.0], [-1.5, 0.0]]),
        torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.5, 0.0], [0.0, 0.1]], [[0.2, -0.05], [-0.05, 0.4]]]),
    )
    field = mix.field(VPCosine())
    x = torch.randn(50, 2, dtype=torch.float64, requires_grad=True)
    for t in (torch.tensor(0.2, dtype=torch.float64), torch.rand(50, dtype=torch.float64) * 0.9 + 0.05):
        (grad,) = torch.autograd.grad(field.log_prob(x, t).sum(), x)
        torch.testing.assert_close(field.score(x.detach(), t), grad, rtol=1e-10, atol=1e-12)


def test_single_gaussian_closed_form():
    mu, s2 = torch.tensor([[1.0, -2.0]]), 0.25
    mix = GaussianMixture(torch.ones(1), mu, s2 * torch.eye(2)[None])
    sch = VPLinear()
    t = torch.tensor(0.4, dtype=torch.float64)
    a, s = sch.alpha(t), sch.sigma(t)
    var = a**2 * s2 + s**2
    x = torch.randn(20, 2, dtype=torch.float64)
    field = mix.field(sch)
    torch.testing.assert_close(field.score(x, t), -(x - a * mu) / var)
    torch.testing.assert_close(field.x0(x, t), mu + a * s2 * (x - a * mu) / var)
    lp = -0.5 * ((x - a * mu) ** 2).sum(1) / var - torch.log(2 * math.pi * var)
    torch.testing.assert_close(field.log_prob(x, t), lp)


def test_noised_mixture_matches_the_field_and_samples():
    mix = GaussianMixture.ring(5, 2.0, 0.2)
    sch = VPLinear()
    t = torch.tensor(0.3, dtype=torch.float64)
    pt = mix.noised(sch, t)
    x = torch.randn(30, 2, dtype=torch.float64)
    torch.testing.assert_close(
        pt.field(VPLinear()).log_prob(x, torch.tensor(0.0, dtype=torch.float64)), mix.field(sch).log_prob(x, t)
    )
    g = torch.Generator().manual_seed(0)
    draws = mix.sample(20000, g)
    se = draws.std(0) / math.sqrt(len(draws))
    assert ((draws.mean(0) - (mix.weights[:, None] * mix.means).sum(0)).abs() < 4 * se).all()


def test_bad_input():
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture(torch.ones(2), torch.zeros(3, 2), torch.eye(2).expand(3, 2, 2))
    with pytest.raises(torch.linalg.LinAlgError):
        GaussianMixture(torch.ones(1), torch.zeros(1, 2), -torch.eye(2)[None])
    with pytest.raises(ValueError, match=r"shape \(batch, 2\)"):
        GaussianMixture.ring().field(VPLinear()).score(torch.zeros(3, 3, dtype=torch.float64), 0.5)


def test_posterior_mean_against_importance_sampling():
    # E[x | y] by self-normalised importance sampling from the prior, within 4 standard errors
    mix = GaussianMixture(torch.tensor([0.4, 0.6]), torch.tensor([[1.0, 0.0, -1.0], [-1.0, 1.0, 0.5]]),
                          torch.stack([0.3 * torch.eye(3), 0.2 * torch.eye(3) + 0.05]))  # fmt: skip
    H = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]], dtype=torch.float64)
    y = torch.tensor([[0.2, 0.4]], dtype=torch.float64)
    sigma = 0.4
    exact = mix.posterior_mean(H, y, sigma)[0]
    g = torch.Generator().manual_seed(0)
    x = mix.sample(400000, g)
    logw = -0.5 * ((y - x @ H.T) ** 2).sum(1) / sigma**2
    w = torch.softmax(logw, 0)
    est = (w[:, None] * x).sum(0)
    ess = 1 / (w**2).sum()
    se = torch.sqrt((w[:, None] * (x - est) ** 2).sum(0) / ess)
    assert ((est - exact).abs() < 4 * se).all(), (est, exact, se)


def test_fit_recovers_a_mixture():
    truth = GaussianMixture.ring(3, 3.0, 0.3)
    x = truth.sample(3000, torch.Generator().manual_seed(0))
    fitted = GaussianMixture.fit(x, 3, reg_covar=1e-6)
    order = fitted.means[:, 0].argsort()
    torch.testing.assert_close(fitted.means[order], truth.means[truth.means[:, 0].argsort()], atol=0.05, rtol=0)
    with pytest.raises(ValueError, match="noise_std"):
        fitted.posterior_mean(torch.eye(2), torch.zeros(1, 2), 0.0)
