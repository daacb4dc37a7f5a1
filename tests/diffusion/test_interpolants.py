import math

import pytest
import torch

from varbook.diffusion import GaussianMixture
from varbook.diffusion.interpolants import (
    GAMMAS,
    PATHS,
    Interpolant,
    InterpolantMixtureField,
    interpolant_losses,
    sample_ode,
    sample_sde,
)

STD = GaussianMixture(torch.ones(1), torch.zeros(1, 2), torch.eye(2)[None])
TARGET = GaussianMixture(
    torch.tensor([0.3, 0.7]),
    torch.tensor([[1.5, 0.0], [-1.0, 1.0]]),
    torch.tensor([[[0.2, 0.05], [0.05, 0.1]], [[0.1, 0.0], [0.0, 0.3]]]),
)
BASE = GaussianMixture.ring(3, 1.0, 0.4)


def field(path, gamma=None):
    it = Interpolant(path, gamma)
    return InterpolantMixtureField(it, STD if it.one_sided else BASE, TARGET)


def all_interpolants():
    out = [(p, None) for p in PATHS]
    out += [("linear", g) for g in GAMMAS if g not in ("zero", "brownian")]
    return out


@pytest.mark.parametrize("path,gamma", all_interpolants())
def test_boundary_values_and_derivatives(path, gamma):
    it = Interpolant(path, gamma)
    zero, one = torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    if path != "mirror":
        assert float(it.alpha(zero)) == pytest.approx(1.0) and float(it.alpha(one)) == pytest.approx(0.0, abs=1e-12)
        assert float(it.beta(zero)) == pytest.approx(0.0, abs=1e-12)
    assert float(it.beta(one)) == pytest.approx(1.0)
    assert float(it.gamma(zero)) == pytest.approx(0.0, abs=1e-12) and float(it.gamma(one)) == pytest.approx(
        0.0, abs=1e-12
    )
    t = torch.linspace(0.05, 0.95, 13, dtype=torch.float64)
    t = t[(t - 0.5).abs() > 0.02]  # the encoder-decoder path has a kink at 1/2
    h = 1e-6
    for f, df in ((it.alpha, it.d_alpha), (it.beta, it.d_beta), (it.gamma, it.d_gamma)):
        torch.testing.assert_close(df(t), (f(t + h) - f(t - h)) / (2 * h), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(it.gamma_dgamma(t), it.gamma(t) * it.d_gamma(t))


@pytest.mark.parametrize("path,gamma", all_interpolants())
def test_exact_score_is_the_gradient_of_the_log_density(path, gamma):
    f = field(path, gamma)
    x = torch.randn(40, 2, dtype=torch.float64, requires_grad=True)
    for t in (torch.tensor(0.3, dtype=torch.float64), 0.05 + 0.9 * torch.rand(40, dtype=torch.float64)):
        (grad,) = torch.autograd.grad(f.log_prob(x, t).sum(), x)
        torch.testing.assert_close(f.score(x.detach(), t), grad, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("path,gamma", all_interpolants())
def test_exact_drift_solves_the_transport_equation(path, gamma):
    # d/dt log rho + div b + b . grad log rho = 0, with d/dt by central differences and div b by autograd
    f = field(path, gamma)
    x = torch.randn(30, 2, dtype=torch.float64)
    for t0 in (0.2, 0.7):
        t, h = torch.tensor(t0, dtype=torch.float64), 1e-5
        dlogp = (f.log_prob(x, t + h) - f.log_prob(x, t - h)) / (2 * h)
        xr = x.clone().requires_grad_(True)
        b = f.b(xr, t)
        div = sum(torch.autograd.grad(b[:, i].sum(), xr, retain_graph=True)[0][:, i] for i in range(2))
        residual = dlogp + div + (b * f.score(x, t)).sum(1)
        assert residual.abs().max() < 1e-6


@pytest.mark.parametrize("path", ["linear", "one_sided_linear", "trig"])
def test_drift_is_the_conditional_expectation_monte_carlo(path):
    # E[(target - b(x_t)) . h(x_t)] = 0 for any test function h, within 4 standard errors
    it = Interpolant(path)
    f = field(path)
    g = torch.Generator().manual_seed(0)
    n = 40000
    x0 = (STD if it.one_sided else BASE).sample(n, g)
    x1, z = TARGET.sample(n, g), torch.randn(n, 2, dtype=torch.float64, generator=g)
    t = torch.tensor(0.4, dtype=torch.float64)
    xt = it.sample(t, x0, x1, z)
    target = it.d_alpha(t) * x0 + it.d_beta(t) * x1 + it.d_gamma(t) * z
    for h in (xt, torch.sin(xt)):
        prod = ((target - f.b(xt, t)) * h).sum(1)
        assert abs(float(prod.mean())) < 4 * float(prod.std()) / math.sqrt(n)


@pytest.mark.parametrize("path", ["one_sided_linear", "one_sided_trig"])
def test_score_from_drift_for_one_sided_interpolants(path):
    f = field(path)
    x = torch.randn(25, 2, dtype=torch.float64)
    for t in (torch.tensor(0.4, dtype=torch.float64), 0.05 + 0.9 * torch.rand(25, dtype=torch.float64)):
        torch.testing.assert_close(f.interpolant.score_from_drift(x, f.b(x, t), t), f.score(x, t))
    with pytest.raises(ValueError, match="one-sided"):
        Interpolant("linear").score_from_drift(x, x, 0.5)


def test_one_sided_linear_is_flow_matching_in_reversed_time():
    it = Interpolant("one_sided_linear")
    f = InterpolantMixtureField(it, STD, TARGET)
    fm = TARGET.field(it.as_schedule())
    x = torch.randn(20, 2, dtype=torch.float64)
    t = torch.tensor(0.35, dtype=torch.float64)
    torch.testing.assert_close(f.b(x, t), -fm.velocity(x, 1 - t))
    torch.testing.assert_close(f.score(x, t), fm.score(x, 1 - t))


class Scaled(torch.nn.Module):
    def __init__(self, fn, scale):
        super().__init__()
        self.fn, self.scale = fn, scale

    def forward(self, x, t):
        return self.scale * self.fn(x, t)


@pytest.mark.parametrize("path", ["linear", "one_sided_linear"])
@pytest.mark.parametrize("kind", ["b", "v", "s", "eta"])
@pytest.mark.parametrize("antithetic", [False, True])
def test_each_loss_is_minimised_by_the_exact_field(path, kind, antithetic):
    it = Interpolant(path)
    f = field(path)
    g = torch.Generator().manual_seed(1)
    n = 20000
    x0 = (STD if it.one_sided else BASE).sample(n, g)
    x1 = TARGET.sample(n, g)
    t = 0.1 + 0.8 * torch.rand(n, dtype=torch.float64, generator=g)
    exact = {"b": f.b, "v": f.v, "s": f.score, "eta": f.eta}[kind]
    values = {}
    for scale in (1.0, 0.9, 1.1):
        torch.manual_seed(2)  # the same latent draws for every candidate
        values[scale] = float(
            interpolant_losses(Scaled(exact, scale), kind, it, x0, x1, t=t, antithetic=antithetic).mean()
        )
    assert values[1.0] < values[0.9] and values[1.0] < values[1.1]


def test_antithetic_pairs_cut_the_score_loss_variance_near_the_end():
    it = Interpolant("one_sided_linear")
    f = field("one_sided_linear")
    g = torch.Generator().manual_seed(3)
    n = 20000
    x0, x1 = STD.sample(n, g), TARGET.sample(n, g)
    t = torch.full((n,), 0.98, dtype=torch.float64)
    plain = interpolant_losses(f.score, "s", it, x0, x1, t=t, antithetic=False)
    pair = interpolant_losses(f.score, "s", it, x0, x1, t=t, antithetic=True)
    assert float(plain.var()) > 10 * float(pair.var())


def test_exact_samplers_reach_the_target():
    from varbook.diffusion import energy_distance

    f = field("one_sided_linear")
    g = torch.Generator().manual_seed(4)
    x = STD.sample(3000, g)
    ts = torch.linspace(0, 0.999, 201, dtype=torch.float64)
    ref = TARGET.sample(3000, g)
    for eps in (0.0, 0.5):
        out = sample_sde(f.b, f.score, x, ts, eps, generator=g)
        assert float(energy_distance(out, ref)) < 0.01
    assert float(energy_distance(sample_ode(f.b, x, ts), ref)) < 0.01


def test_bad_input():
    with pytest.raises(ValueError, match="unknown path"):
        Interpolant("cubic")
    with pytest.raises(ValueError, match="unknown gamma"):
        Interpolant("linear", "a-brownian")
    with pytest.raises(ValueError, match="one-sided"):
        Interpolant("one_sided_linear", "brownian")
    with pytest.raises(ValueError, match="needs gamma"):
        Interpolant("linear", "zero")
    with pytest.raises(ValueError, match="unknown field"):
        interpolant_losses(lambda x, t: x, "u", Interpolant(), torch.zeros(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="eps"):
        sample_sde(lambda x, t: x, lambda x, t: x, torch.zeros(2, 2), torch.linspace(0, 1, 3), -1.0)
    with pytest.raises(ValueError, match="different dimensions"):
        InterpolantMixtureField(Interpolant(), STD, GaussianMixture.ring(dim=3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Interpolant().alpha(torch.tensor(1.2))
    with pytest.raises(ValueError, match="only the one-sided linear"):
        Interpolant("trig").as_schedule()


@pytest.mark.parametrize("path,gamma", all_interpolants())
def test_one_dimensional_fields_match_the_general_code(path, gamma):
    rho0 = GaussianMixture(
        torch.tensor([0.3, 0.7]), torch.tensor([[0.0], [1.0]]), torch.tensor([1.0, 0.5])[:, None, None]
    )
    rho1 = GaussianMixture(
        torch.tensor([1.0, 2.0, 3.0]),
        torch.tensor([[-2.0], [2.0], [0.5]]),
        torch.tensor([0.09, 0.2, 0.5])[:, None, None],
    )
    f = InterpolantMixtureField(Interpolant(path, gamma), rho0, rho1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 1, dtype=torch.float64, generator=g)
    for t in (torch.tensor(0.37, dtype=torch.float64), 0.02 + 0.96 * torch.rand(50, dtype=torch.float64, generator=g)):
        for fast, general in zip(f._parts_1d(x, t), f._parts_nd(x, t), strict=True):
            torch.testing.assert_close(fast, general, rtol=1e-10, atol=1e-10)
