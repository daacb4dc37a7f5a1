"""Tests of varbook.gp.svgp: sparse variational GP/TP classifiers against direct computations."""

from __future__ import annotations

import math

import pytest
import torch

from varbook.gp import svgp
from varbook.gp.kernels import nngp_relu
from varbook.vi.kl import inverse_gamma_kl

F64 = dict(dtype=torch.float64)


def model(kind: str, seed: int = 0) -> svgp.SparseClassifier:
    g = torch.Generator().manual_seed(seed)
    m = svgp.SparseClassifier(torch.randn(6, 3, generator=g, **F64), 4, kind, depth=2, b_std=0.3, jitter=1e-4)
    with torch.no_grad():  # move q(u) away from its initial value
        m.m.copy_(torch.randn(4, 6, generator=g, **F64))
        m.log_s.add_(0.5 * torch.randn(4, 6, generator=g, **F64) - 1)
    return m


def k_zz(m: svgp.SparseClassifier) -> torch.Tensor:
    k = nngp_relu(m.z, **m.kernel_args)
    return k + m.jitter * k.diagonal().mean() * torch.eye(len(k), **F64)


@pytest.mark.parametrize("kind", svgp.SPARSE_KINDS)
def test_kl_is_the_gaussian_kl_to_the_prior(kind):
    m = model(kind)
    p = torch.distributions.MultivariateNormal(torch.zeros(6, **F64), k_zz(m))
    direct = sum(
        torch.distributions.kl_divergence(torch.distributions.MultivariateNormal(mc, torch.diag(sc.exp())), p)
        for mc, sc in zip(m.m, m.log_s, strict=True)
    )
    if kind == "tp":
        with torch.no_grad():
            m.log_a.fill_(math.log(3.0))
            m.log_b.fill_(math.log(1.5))
        direct = direct + inverse_gamma_kl(3.0, 1.5, 2.0, 2.0)
    torch.testing.assert_close(m.kl(), direct.to(torch.float64))


def test_marginals_equal_the_direct_conditional():
    m = model("gp")
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), **F64)
    kxz = nngp_relu(x, m.z, **m.kernel_args)
    a = torch.linalg.solve(k_zz(m), kxz.T).T  # K_XZ K_ZZ^{-1}
    mean, var = m.marginals(x)
    torch.testing.assert_close(mean, (a @ m.m.T).T)
    for c in range(4):
        cov = nngp_relu(x, **m.kernel_args) - a @ kxz.T + a @ torch.diag(m.log_s[c].exp()) @ a.T
        torch.testing.assert_close(var[c], cov.diagonal())


@pytest.mark.parametrize("kind", svgp.SPARSE_KINDS)
def test_sample_mean_and_variance_match_the_closed_form(kind):
    # SVTP with q(sigma^2) = InvGamma(5, 3): Var f = v b / (a - 1); df = 10 so the sample
    # variance has a finite variance and the standard error below is meaningful
    m = model(kind)
    if kind == "tp":
        with torch.no_grad():
            m.log_a.fill_(math.log(5.0))
            m.log_b.fill_(math.log(3.0))
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(2), **F64)
    n = 100_000
    f = m.sample_f(x, n, torch.Generator().manual_seed(3)).detach()  # (S, N, C)
    mean, var = (t.T.detach() for t in m.marginals(x))
    expected_var = var * (3.0 / 4.0 if kind == "tp" else 1.0)
    sq = (f - mean) ** 2
    se_var = sq.std(0) / math.sqrt(n)
    assert ((sq.mean(0) - expected_var).abs() < 4 * se_var).all()
    assert ((f.mean(0) - mean).abs() < 4 * f.std(0) / math.sqrt(n)).all()


def test_inverse_gamma_rsample_mean_and_reparameterised_gradient():
    a = torch.tensor(4.0, **F64, requires_grad=True)
    b = torch.tensor(2.0, **F64)
    n = 200_000
    draws = svgp.inverse_gamma_rsample(a, b, n, torch.Generator().manual_seed(0))
    # E sigma^2 = b / (a - 1) = 2/3 and d/da E sigma^2 = -b / (a - 1)^2 = -2/9
    d = draws.detach()
    assert abs(float(d.mean()) - 2 / 3) < 4 * float(d.std()) / math.sqrt(n)
    (grad,) = torch.autograd.grad(draws.mean(), a)
    # pathwise derivative of one draw sigma^2 = b / G: -(sigma^2)^2 / b * dG/da (implicit reparameterisation)
    per_draw = -(d**2) / b * torch._standard_gamma_grad(a.detach().expand(n), b / d)
    torch.testing.assert_close(grad, per_draw.mean())
    assert abs(float(grad) + 2 / 9) < 4 * float(per_draw.std()) / math.sqrt(n)


def test_training_separates_two_blobs():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 2
    x = torch.randn(200, 2, generator=g, **F64) * 0.3 + (2 * y[:, None] - 1) * torch.tensor([1.0, 0.0], **F64)
    for kind in svgp.SPARSE_KINDS:
        m = svgp.SparseClassifier(svgp.inducing_init(x, 10, g), 2, kind, depth=2, b_std=0.3, last_w_std=3.0)
        history = svgp.train_sparse(m, x, y, epochs=15, batch_size=50, n_samples=8, generator=g)
        probs = m.predict_proba(x, 20, g)
        assert history["loss"][-1] < history["loss"][0]
        assert float((probs.argmax(1) == y).double().mean()) > 0.95


def test_bad_input():
    z = torch.randn(4, 2, **F64)
    with pytest.raises(ValueError, match="kind"):
        svgp.SparseClassifier(z, 3, "student")
    with pytest.raises(ValueError, match="z must be"):
        svgp.SparseClassifier(z[0], 3)
    with pytest.raises(ValueError, match="n_classes"):
        svgp.SparseClassifier(z, 1)
    m = svgp.SparseClassifier(z, 3)
    with pytest.raises(ValueError, match="x must be"):
        m.marginals(torch.randn(5, 3, **F64))
    with pytest.raises(ValueError, match="n_samples"):
        m.sample_f(torch.randn(5, 2, **F64), 0)
    with pytest.raises(ValueError, match="scale posterior"):
        m.scale_posterior()
    with pytest.raises(ValueError, match="labels"):
        m.loss(torch.randn(5, 2, **F64), torch.zeros(4, dtype=torch.int64), 10, 2)
    with pytest.raises(ValueError, match="epochs"):
        svgp.train_sparse(m, torch.randn(5, 2, **F64), torch.zeros(5, dtype=torch.int64), epochs=0)
    with pytest.raises(ValueError, match="positive"):
        svgp.inverse_gamma_rsample(torch.tensor(-1.0), torch.tensor(1.0), 3)
    with pytest.raises(ValueError, match="m must be"):
        svgp.inducing_init(z, 5)
