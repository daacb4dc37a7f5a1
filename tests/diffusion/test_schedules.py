import pytest
import torch

from varbook.diffusion import VE, DiscreteVP, Linear, VPCosine, VPLinear, ddpm_alpha_bar, time_grid
from varbook.diffusion.schedules import Schedule

SCHEDULES = [VPLinear(), VPCosine(), VE(), Linear(), DiscreteVP()]
T = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)


@pytest.mark.parametrize("sch", SCHEDULES, ids=repr)
def test_derivatives_match_finite_differences(sch):
    fd_alpha, fd_sigma = Schedule._diff(sch.alpha, T, 1e-6), Schedule._diff(sch.sigma, T, 1e-6)
    torch.testing.assert_close(sch.d_alpha(T), fd_alpha, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(sch.d_sigma(T), fd_sigma, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("sch", [VPLinear(), VPCosine(), DiscreteVP()], ids=repr)
def test_variance_preserving(sch):
    torch.testing.assert_close(sch.alpha(T) ** 2 + sch.sigma(T) ** 2, torch.ones_like(T))


@pytest.mark.parametrize("sch", SCHEDULES, ids=repr)
def test_sde_coefficients_give_the_marginal_variance(sch):
    # d/dt sigma^2 = 2 f sigma^2 + g^2 for the noise part of x_t = alpha x0 + sigma eps
    lhs = 2 * sch.sigma(T) * sch.d_sigma(T)
    torch.testing.assert_close(lhs, 2 * sch.drift(T) * sch.sigma(T) ** 2 + sch.g2(T))


def test_vp_linear_closed_forms():
    sch = VPLinear()
    torch.testing.assert_close(sch.drift(T), -0.5 * sch.beta(T))
    torch.testing.assert_close(sch.g2(T), Schedule.g2(sch, T))


@pytest.mark.parametrize("sch", [VPLinear(), VPCosine(), VE(), Linear(), DiscreteVP()], ids=repr)
def test_log_snr_inverse(sch):
    t = torch.linspace(0.05, 0.9, 9, dtype=torch.float64)
    torch.testing.assert_close(sch.t_of_log_snr(sch.log_snr(t)), t, atol=1e-10, rtol=0)


def test_discrete_schedule_on_the_grid():
    ab = ddpm_alpha_bar(1000)
    assert ab[0] == 1 and ab.shape == (1001,)
    torch.testing.assert_close(ab[1], torch.tensor(1 - 1e-4, dtype=torch.float64))
    sch = DiscreteVP(ab)
    i = torch.tensor([0, 1, 17, 500, 1000])
    torch.testing.assert_close(sch.alpha(i.double() / 1000), ab[i].sqrt())


def test_time_grid():
    ts = time_grid(VPLinear(), 10, t_min=1e-3)
    assert ts.shape == (11,) and ts[0] == 1.0 and ts[-1] == 1e-3 and (ts.diff() < 0).all()
    lam = VPLinear().log_snr(ts)
    torch.testing.assert_close(lam.diff(), torch.full((10,), float(lam.diff().mean()), dtype=torch.float64))
    u = time_grid(Linear(), 4, t_min=0.0, spacing="uniform")
    torch.testing.assert_close(u, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64))


def test_bad_input():
    with pytest.raises(ValueError, match="beta_min"):
        VPLinear(1.0, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        VPLinear()(torch.tensor(1.5))
    with pytest.raises(ValueError, match="spacing"):
        time_grid(VPLinear(), 5, spacing="cubic")
    with pytest.raises(ValueError, match="t_min > 0"):
        time_grid(VPLinear(), 5, t_min=0.0)
    with pytest.raises(ValueError, match="decreasing"):
        DiscreteVP(torch.tensor([1.0, 0.5, 0.7]))
    with pytest.raises(ValueError, match="same shape"):
        VPLinear().q_sample(torch.zeros(3, 2), torch.rand(3), torch.zeros(3, 3))
