import math

import pytest
import torch

from varbook.diffusion import (
    SAMPLERS,
    DiscreteVP,
    Field,
    GaussianMixture,
    VPCosine,
    VPLinear,
    nfe,
    posterior,
    prior,
    sample,
    sample_ddim,
    sample_ddim_as_euler,
    sample_ddpm,
    sample_reverse_sde,
    steps_for_nfe,
    time_grid,
)

MU, S2 = torch.tensor([[0.5, -1.0]], dtype=torch.float64), 0.3


def gaussian_field(sch):
    return GaussianMixture(torch.ones(1), MU, S2 * torch.eye(2, dtype=torch.float64)[None]).field(sch)


def exact_flow(sch, x, t0, t1):
    """The probability-flow ODE of a Gaussian keeps the standardised state fixed."""
    t0, t1 = torch.tensor(t0, dtype=torch.float64), torch.tensor(t1, dtype=torch.float64)
    sd = lambda t: torch.sqrt(sch.alpha(t) ** 2 * S2 + sch.sigma(t) ** 2)  # noqa: E731
    return sch.alpha(t1) * MU + sd(t1) * (x - sch.alpha(t0) * MU) / sd(t0)


@pytest.mark.parametrize("method,order", [("euler", 1), ("ddim", 1), ("heun", 2), ("dpm2", 2)])
@pytest.mark.parametrize("sch", [VPLinear(), VPCosine()], ids=repr)
def test_ode_samplers_converge_to_the_exact_flow_at_their_order(method, order, sch):
    field = gaussian_field(sch)
    x = torch.randn(200, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t_max, t_min = sch.t_max, 1e-2
    target = exact_flow(sch, x, t_max, t_min)
    errors = []
    for n in (40, 80):
        out = sample(method, field, x, time_grid(sch, n, t_min=t_min, t_max=t_max))
        errors.append(float((out - target).norm(dim=1).max()))
    assert errors[1] < 0.05
    observed = math.log2(errors[0] / errors[1])
    assert abs(observed - order) < 0.35, (errors, observed)


def test_ddim_is_euler_in_rescaled_variables():
    sch = VPCosine()
    field = GaussianMixture.ring(6, 2.0, 0.3).field(sch)
    x = prior(sch, 100, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ts = time_grid(sch, 25, t_min=1e-3)
    torch.testing.assert_close(sample_ddim(field, x, ts), sample_ddim_as_euler(field, x, ts), rtol=0, atol=1e-12)


def test_ddim_with_eta_one_is_ddpm():
    sch = VPLinear()
    field = GaussianMixture.ring(4, 1.0, 0.3).field(sch)
    x = torch.randn(50, 2, dtype=torch.float64)
    ts = time_grid(sch, 10, t_min=1e-3)
    a = sample_ddim(field, x, ts, eta=1.0, generator=torch.Generator().manual_seed(3))
    b = sample_ddpm(field, x, ts, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_posterior_closed_form_against_bayes():
    # q(x_s | x_t, x0) for a single coordinate, computed by completing the square on the joint Gaussian
    sch = VPLinear()
    t, s = torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.3, dtype=torch.float64)
    x0, xt = torch.tensor([[0.7]], dtype=torch.float64), torch.tensor([[-0.2]], dtype=torch.float64)
    a_t, a_s, s_t, s_s = sch.alpha(t), sch.alpha(s), sch.sigma(t), sch.sigma(s)
    a_ts, v_ts = a_t / a_s, s_t**2 - (a_t / a_s) ** 2 * s_s**2
    prec = 1 / s_s**2 + a_ts**2 / v_ts
    mean = (a_s * x0 / s_s**2 + a_ts * xt / v_ts) / prec
    m, sd = posterior(sch, t, s, xt, x0)
    torch.testing.assert_close(m, mean)
    torch.testing.assert_close(sd, (1 / prec).sqrt().to(sd))


@pytest.mark.parametrize("method", ["ddpm", "sde"])
def test_stochastic_samplers_hit_the_gaussian_target(method):
    sch = VPLinear()
    field = gaussian_field(sch)
    n = 20000
    g = torch.Generator().manual_seed(0)
    x = prior(sch, n, 2, generator=g, dtype=torch.float64)
    out = sample(method, field, x, time_grid(sch, 200, t_min=1e-3, spacing="uniform"), generator=g)
    var = S2 * float(sch.alpha(torch.tensor(1e-3))) ** 2 + float(sch.sigma(torch.tensor(1e-3))) ** 2
    # mean within 4 standard errors; variance within 4 standard errors of the sample variance (plus discretisation)
    assert (
        (out.mean(0) - MU[0] * sch.alpha(torch.tensor(1e-3, dtype=torch.float64))).abs() < 4 * math.sqrt(var / n) + 0.01
    ).all()
    assert ((out.var(0) - var).abs() < 4 * var * math.sqrt(2 / n) + 0.02).all()


def test_nfe_counts():
    ts = time_grid(VPLinear(), 10, t_min=1e-3)
    assert nfe("euler", ts) == 10 and nfe("heun", ts) == 20 and nfe("dpm2", ts) == 20
    ts0 = time_grid(VPLinear(), 10, t_min=0.0, spacing="uniform")
    assert nfe("heun", ts0) == 19
    assert steps_for_nfe("heun", 20) == 10 and steps_for_nfe("euler", 20) == 20


class Counting(Field):
    kind = "eps"

    def __init__(self, inner):
        self.inner, self.schedule, self.calls = inner, inner.schedule, 0

    def predict(self, x, t):
        self.calls += 1
        return self.inner.eps(x, t)


@pytest.mark.parametrize("method", list(SAMPLERS))
@pytest.mark.parametrize("t_min", [1e-3, 0.0])
def test_nfe_matches_the_evaluations_made(method, t_min):
    sch = VPLinear()
    field = Counting(GaussianMixture.ring().field(sch))
    ts = time_grid(sch, 6, t_min=t_min, spacing="uniform")
    out = sample(method, field, torch.randn(4, 2, dtype=torch.float64), ts, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all()
    assert field.calls == nfe(method, ts)


def test_ddim_matches_diffusers():
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDIMScheduler(
        num_train_timesteps=1000, beta_schedule="linear", clip_sample=False, set_alpha_to_one=True
    )
    ref.set_timesteps(50)
    ab = torch.cat([torch.ones(1, dtype=torch.float64), ref.alphas_cumprod.double()])
    sch = DiscreteVP(ab)
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(8, 3, dtype=torch.float64, generator=g), torch.randn(8, 3, dtype=torch.float64, generator=g)

    class Const(Field):
        kind, schedule = "eps", sch

        def predict(self, x, t):
            return eps

    for k in (int(ref.timesteps[0]), int(ref.timesteps[20]), int(ref.timesteps[-1])):
        ts = torch.tensor([(k + 1) / 1000, max(k + 1 - 20, 0) / 1000], dtype=torch.float64)
        # diffusers keeps its schedule in float32 (sqrt taken in float32): agreement is to float32 rounding
        torch.testing.assert_close(sample_ddim(Const(), x, ts), ref.step(eps, k, x).prev_sample, rtol=0, atol=1e-6)


def test_bad_input():
    field = GaussianMixture.ring().field(VPLinear())
    x = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="decreasing"):
        sample_ddim(field, x, torch.tensor([0.1, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown sampler"):
        sample("rk4", field, x, time_grid(VPLinear(), 2))
    with pytest.raises(ValueError, match="eta"):
        sample_ddim(field, x, time_grid(VPLinear(), 2), eta=2.0)
    from varbook.diffusion import Linear

    with pytest.raises(ValueError, match="singular"):
        sample_reverse_sde(GaussianMixture.ring().field(Linear()), x, time_grid(Linear(), 2, spacing="uniform"))
