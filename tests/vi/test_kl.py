import torch
from torch import distributions as D

from varbook.estimators.reparam import reparameterize
from varbook.vi.kl import gaussian_kl, gaussian_kl_standard


def test_gaussian_kl_against_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu1, lv1, mu2, lv2 = (torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(4))
    ref = D.kl_divergence(
        D.Independent(D.Normal(mu1, (0.5 * lv1).exp()), 1), D.Independent(D.Normal(mu2, (0.5 * lv2).exp()), 1)
    )
    assert torch.allclose(gaussian_kl(mu1, lv1, mu2, lv2), ref)
    assert torch.allclose(gaussian_kl_standard(mu1, lv1), gaussian_kl(mu1, lv1))
    assert torch.allclose(gaussian_kl_standard(torch.zeros(3), torch.zeros(3)), torch.tensor(0.0))


def test_gaussian_kl_monte_carlo():
    mu, lv = torch.tensor([0.5, -1.0], dtype=torch.float64), torch.tensor([0.2, -0.7], dtype=torch.float64)
    z = reparameterize(mu.expand(200000, 2), lv.expand(200000, 2), torch.Generator().manual_seed(1))
    q = D.Independent(D.Normal(mu, (0.5 * lv).exp()), 1)
    p = D.Independent(D.Normal(torch.zeros(2, dtype=torch.float64), 1.0), 1)
    mc = q.log_prob(z) - p.log_prob(z)
    assert abs(float(mc.mean() - gaussian_kl_standard(mu, lv))) < 4 * float(mc.std()) / 200000**0.5


def test_reparameterize_moments_and_gradient():
    mu = torch.tensor([1.0, -2.0], requires_grad=True)
    lv = torch.tensor([0.0, 1.0], requires_grad=True)
    z = reparameterize(mu.expand(100000, 2), lv.expand(100000, 2), torch.Generator().manual_seed(2))
    assert torch.allclose(z.mean(0), mu.detach(), atol=0.03)
    assert torch.allclose(z.var(0), lv.detach().exp(), rtol=0.03)
    (g,) = torch.autograd.grad(z.mean(0).sum(), mu)
    assert torch.allclose(g, torch.ones(2))
