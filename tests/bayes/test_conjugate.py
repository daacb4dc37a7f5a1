"""Closed forms of varbook.bayes.conjugate against direct Bayes computations and Monte Carlo."""

from __future__ import annotations

import math

import pytest
import torch

from varbook.bayes.conjugate import NormalGamma, expected_kl, gamma_kl, niw_local_posterior, normal_posterior

D = dict(dtype=torch.float64)


def test_normal_posterior_matches_bayes_rule_on_a_grid():
    g = torch.Generator().manual_seed(0)
    m0, p0, tau = 0.7, 2.0, 4.0
    x = 1.5 + torch.randn(6, generator=g, **D) / math.sqrt(tau)
    mean, prec = normal_posterior(m0, p0, x.mean(), len(x) * tau)
    grid = torch.linspace(-4, 6, 200_001, **D)
    log_post = -0.5 * p0 * (grid - m0) ** 2 - 0.5 * tau * ((x[:, None] - grid) ** 2).sum(0)
    w = (log_post - log_post.max()).exp()
    w = w / w.sum()
    grid_mean = (w * grid).sum()
    grid_var = (w * (grid - grid_mean) ** 2).sum()
    assert torch.allclose(mean, grid_mean, atol=1e-8)
    assert torch.allclose(1 / prec, grid_var, rtol=1e-6)


def test_normal_gamma_update_matches_bayes_rule_on_a_grid():
    g = torch.Generator().manual_seed(1)
    prior = NormalGamma(torch.tensor([0.5], **D), 2.0, 3.0, torch.tensor([0.4], **D))
    x = 1.0 + 0.8 * torch.randn(5, 1, generator=g, **D)
    post = prior.update(x)
    mu = torch.linspace(-3, 4, 1401, **D)[:, None]
    lam = torch.linspace(1e-4, 12, 2400, **D)[None, :]
    rate0 = 1 / (2 * 0.4)
    log_p = (
        (1.5 - 1) * lam.log()
        - rate0 * lam  # Gamma(n/2, rate)
        + 0.5 * lam.log()
        - 0.5 * 2.0 * lam * (mu - 0.5) ** 2  # N(m0, 1/(l lam))
        + 0.5 * len(x) * lam.log()
        - 0.5 * lam * ((x[:, 0, None, None] - mu) ** 2).sum(0)
    )
    w = (log_p - log_p.max()).exp()
    w = w / w.sum()
    assert float((w * mu).sum()) == pytest.approx(float(post.m), abs=1e-5)
    e_lam = float(torch.as_tensor(post.n) * post.gamma)
    assert float((w * lam).sum()) == pytest.approx(e_lam, rel=1e-4)


def test_local_solution_minimises_the_local_objective():
    g = torch.Generator().manual_seed(2)
    m_bar, m0 = torch.randn(5, generator=g, **D), torch.randn(5, generator=g, **D)
    a_bar = torch.rand(5, generator=g, **D) * 10 + 0.1
    gamma0 = torch.rand(5, generator=g, **D) + 0.5
    n0 = torch.tensor(1.7, **D)
    m_star, g_star = niw_local_posterior(m_bar, a_bar, m0, gamma0, n0)
    m, gam = m_star.clone().requires_grad_(True), g_star.clone().requires_grad_(True)
    obj = 0.5 * (a_bar * ((m - m_bar) ** 2 + 1 / gam)).sum() + expected_kl(m, gam, m0, gamma0, n0)
    dm, dg = torch.autograd.grad(obj, (m, gam))
    assert dm.abs().max() < 1e-10 and dg.abs().max() < 1e-10
    # a wrong solution (the prior's precision without n0) is not stationary
    _, wrong = normal_posterior(m0, gamma0, m_bar, a_bar)
    assert not torch.allclose(wrong, g_star)


def test_expected_kl_matches_monte_carlo_over_the_precision():
    m, m0 = torch.tensor([0.3, -1.0], **D), torch.tensor([0.0, 0.5], **D)
    gam, gamma0, n0 = torch.tensor([2.0, 0.5], **D), torch.tensor([0.7, 1.3], **D), 3.0
    n = 200_000
    lam = torch.distributions.Gamma(torch.full((2,), n0 / 2, **D), 1 / (2 * gamma0))
    torch.manual_seed(3)
    draws = lam.sample((n,))
    q = torch.distributions.Normal(m, gam.rsqrt())
    kls = torch.distributions.kl_divergence(q, torch.distributions.Normal(m0, draws.rsqrt())).sum(-1)
    exact = float(expected_kl(m, gam, m0, gamma0, n0))
    assert abs(float(kls.mean()) - exact) < 4 * float(kls.std()) / math.sqrt(n)


def test_normal_gamma_kl_matches_monte_carlo():
    q = NormalGamma(torch.tensor([0.2], **D), 3.0, 4.0, torch.tensor([0.5], **D))
    p = NormalGamma(torch.tensor([-0.4], **D), 1.5, 2.0, torch.tensor([1.2], **D))

    def log_density(ng: NormalGamma, mu, lam):
        gam = torch.distributions.Gamma(torch.as_tensor(ng.n, **D) / 2, ng.rate)
        return gam.log_prob(lam) + torch.distributions.Normal(ng.m, (ng.ell * lam).rsqrt()).log_prob(mu)

    torch.manual_seed(4)
    lam = torch.distributions.Gamma(torch.as_tensor(q.n, **D) / 2, q.rate).sample((200_000,))
    mu = q.m + (q.ell * lam).rsqrt() * torch.randn_like(lam)
    terms = log_density(q, mu, lam) - log_density(p, mu, lam)
    se = float(terms.std()) / math.sqrt(len(terms))
    assert abs(float(terms.mean()) - float(q.kl(p))) < 4 * se
    assert float(q.kl(q)) == pytest.approx(0.0, abs=1e-12)
    assert float(gamma_kl(4.0, q.gamma, 4.0, q.gamma).sum()) == pytest.approx(0.0, abs=1e-12)


def test_bad_input_is_refused():
    one = torch.ones(3)
    with pytest.raises(ValueError, match="prior_precision"):
        normal_posterior(0.0, -1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="obs_precision"):
        normal_posterior(0.0, 1.0, 0.0, -1.0)
    with pytest.raises(ValueError, match="n0"):
        niw_local_posterior(one, one, one, one, 0.0)
    with pytest.raises(ValueError, match="gamma"):
        expected_kl(one, -one, one, one, 1.0)
    with pytest.raises(ValueError, match="ell must be positive"):
        NormalGamma(one, 0.0, 1.0, one)
    with pytest.raises(ValueError, match="observations"):
        NormalGamma(one, 1.0, 1.0, one).update(torch.ones(0, 3))
