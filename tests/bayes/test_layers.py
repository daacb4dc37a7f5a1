import math

import pytest
import torch
from torch import distributions as D

from varbook.bayes import BayesMLP, MeanFieldConv2d, MeanFieldLinear, kl_divergence, sampling


def test_kl_against_closed_form_and_mask():
    torch.manual_seed(0)
    layer = MeanFieldLinear(5, 3, prior_std=0.3, init_sigma=0.2)
    sigma = torch.nn.functional.softplus(layer.rho)
    q = D.Normal(layer.mu, sigma)
    p = D.Normal(torch.zeros_like(layer.mu), 0.3)
    expected = (
        D.kl_divergence(q, p).sum()
        + D.kl_divergence(
            D.Normal(layer.bias_mu, torch.nn.functional.softplus(layer.bias_rho)), D.Normal(torch.zeros(3), 0.3)
        ).sum()
    )
    assert torch.allclose(layer.kl(), expected, rtol=1e-5)
    layer.mask[0, :] = False
    masked = expected - D.kl_divergence(q, p)[0].sum()
    assert torch.allclose(layer.kl(), masked, rtol=1e-5)
    assert (layer.sigma[0] == 0).all()


def test_kl_monte_carlo():
    torch.manual_seed(1)
    layer = MeanFieldLinear(2, 1, prior_std=0.5, init_sigma=0.4, bias=False)
    sigma = torch.nn.functional.softplus(layer.rho).detach()
    w = layer.mu.detach() + sigma * torch.randn(200000, 1, 2)
    mc = (D.Normal(layer.mu.detach(), sigma).log_prob(w) - D.Normal(0.0, 0.5).log_prob(w)).sum((-1, -2))
    assert abs(float(mc.mean() - layer.kl().detach())) < 4 * float(mc.std()) / math.sqrt(len(mc))


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_local_reparameterisation_matches_sampled_weights(kind):
    torch.manual_seed(2)
    if kind == "linear":
        layer = MeanFieldLinear(4, 3, init_sigma=0.3)
        x = torch.randn(1, 4)
    else:
        layer = MeanFieldConv2d(2, 3, 3, padding=1, init_sigma=0.3)
        x = torch.randn(1, 2, 4, 4)
    layer.mask.view(-1)[::3] = False
    n = 40000
    with torch.no_grad():
        lrt = layer(x.expand(n, *x.shape[1:]))
        w = layer.mu * layer.mask + layer.sigma * torch.randn(n, *layer.mu.shape)
        b = layer.bias_mu + torch.nn.functional.softplus(layer.bias_rho) * torch.randn(n, *layer.bias_mu.shape)
        if kind == "linear":
            sampled = torch.einsum("i,noi->no", x[0], w) + b
        else:
            sampled = torch.stack([torch.nn.functional.conv2d(x, w[k], b[k], padding=1)[0] for k in range(2000)])
            lrt = lrt[:2000]
    m = len(sampled)
    assert torch.allclose(lrt.mean(0), sampled.mean(0), atol=6 * float(sampled.std(0).max()) / math.sqrt(m))
    assert torch.allclose(lrt.var(0), sampled.var(0), rtol=0.15 if kind == "conv" else 0.05)


def test_eval_uses_the_mean_unless_sampling():
    torch.manual_seed(3)
    model = BayesMLP([4, 8, 2])
    model.eval()
    x = torch.randn(5, 4)
    assert torch.equal(model(x), model(x))
    with sampling(model):
        assert not torch.equal(model(x), model(x))
    assert torch.equal(model(x), model(x))
    assert kl_divergence(model) > 0


def test_masked_weights_receive_no_update():
    torch.manual_seed(4)
    layer = MeanFieldLinear(6, 4)
    layer.mask.view(-1)[::2] = False
    with torch.no_grad():
        layer.mu.mul_(layer.mask)
    loss = layer(torch.randn(8, 6)).pow(2).sum() + layer.kl()
    loss.backward()
    assert (layer.mu.grad[~layer.mask] == 0).all()
    assert (layer.rho.grad[~layer.mask] == 0).all()


def test_bad_arguments():
    with pytest.raises(ValueError):
        MeanFieldLinear(2, 2, prior_std=0.0)
    with pytest.raises(ValueError):
        BayesMLP([3])
    with pytest.raises(ValueError, match="no mean-field layers"):
        kl_divergence(torch.nn.Linear(2, 2))


def test_random_sigma_initialisation_is_a_folded_normal():
    g = torch.Generator().manual_seed(0)
    layer = MeanFieldLinear(400, 400, init_sigma=6e-4, init_sigma_std=5e-4, generator=g)
    sigma = layer.sigma.detach().flatten().double()
    # E|N(m, s^2)| = m erf(m / (s sqrt 2)) + s sqrt(2/pi) exp(-m^2 / 2s^2), within 5 standard errors
    m, s = 6e-4, 5e-4
    folded = m * math.erf(m / (s * math.sqrt(2))) + s * math.sqrt(2 / math.pi) * math.exp(-(m**2) / (2 * s**2))
    assert abs(float(sigma.mean()) - folded) < 5 * float(sigma.std()) / math.sqrt(sigma.numel())
    assert float(sigma.std()) > 3e-4 and (sigma > 0).all()  # a spread, not one constant
    again = MeanFieldLinear(400, 400, init_sigma=6e-4, init_sigma_std=5e-4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.rho, layer.rho) and torch.equal(again.mu, layer.mu)
    constant = MeanFieldLinear(3, 2, init_sigma=1e-3)
    assert torch.allclose(constant.sigma, torch.full((2, 3), 1e-3))


def test_sigma_moves_under_a_likelihood_that_rewards_variance():
    # loss = -E[b^2] with b the LRT pre-activation: E[b^2] = (x mu)^2 + x^2 sigma^2 + 1e-8, so the expected
    # gradient is d loss / d rho_j = -2 sigma_j softplus'(rho_j) mean(x_j^2); one SGD step must move rho by it
    torch.manual_seed(5)
    layer = MeanFieldLinear(3, 1, init_sigma=0.05)
    x = torch.randn(200000, 3, generator=torch.Generator().manual_seed(1))
    rho0, sigma0 = layer.rho.detach().clone(), layer.sigma.detach().clone()
    opt = torch.optim.SGD([layer.rho], lr=1.0)
    loss = -layer(x, torch.Generator().manual_seed(2)).pow(2).mean()
    loss.backward()
    opt.step()
    expected = 2 * sigma0 * torch.sigmoid(rho0) * x.pow(2).mean(0)
    assert torch.allclose(layer.rho.detach() - rho0, expected, rtol=0.05)
    assert (layer.sigma.detach() > sigma0).all()


def test_a_deterministic_layer_returns_its_mean():
    layer = MeanFieldLinear(4, 3, init_sigma=0.5)
    layer.deterministic = True
    x = torch.randn(5, 4)
    with sampling(layer):
        assert torch.equal(layer(x), x @ layer.mu.T + layer.bias_mu)
