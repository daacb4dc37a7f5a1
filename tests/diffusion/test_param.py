import itertools

import pytest
import torch

from varbook.diffusion import KINDS, GaussianMixture, Linear, VPCosine, VPLinear, convert, tweedie


@pytest.mark.parametrize("sch", [VPLinear(), VPCosine(), Linear()], ids=repr)
@pytest.mark.parametrize(("src", "dst"), list(itertools.permutations(KINDS, 2)))
def test_conversions_agree_with_the_exact_fields(sch, src, dst):
    field = GaussianMixture.ring(4, 1.5, 0.3).field(sch)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, dtype=torch.float64, generator=g)
    t = 0.05 + 0.9 * torch.rand(64, dtype=torch.float64, generator=g)
    exact = {k: getattr(field, {"eps": "eps", "x0": "x0", "score": "score", "v": "velocity"}[k])(x, t) for k in KINDS}
    out = convert(exact[src], src, dst, x, t, sch)
    assert (out - exact[dst]).abs().max() <= 1e-10 * (1 + exact[dst].abs().max())
    back = convert(out, dst, src, x, t, sch)
    assert (back - exact[src]).abs().max() <= 1e-10 * (1 + exact[src].abs().max())


def test_velocity_is_finite_where_alpha_vanishes():
    sch = Linear()
    x = torch.randn(5, 2, dtype=torch.float64)
    v = torch.randn(5, 2, dtype=torch.float64)
    one = torch.ones(5, dtype=torch.float64)
    x0 = convert(v, "v", "x0", x, one, sch)
    eps = convert(v, "v", "eps", x, one, sch)
    torch.testing.assert_close(x0, x - v)  # x0 = x - t v on the linear path
    torch.testing.assert_close(eps, x)  # at t = 1 the state is pure noise


def test_tweedie_is_the_posterior_mean():
    sch = VPLinear()
    field = GaussianMixture.ring(3, 1.0, 0.5).field(sch)
    x = torch.randn(10, 2, dtype=torch.float64)
    t = torch.tensor(0.3, dtype=torch.float64)
    torch.testing.assert_close(tweedie(x, field.score(x, t), t, sch), field.x0(x, t))


def test_bad_input():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="unknown prediction kind"):
        convert(x, "noise", "x0", x, 0.5, VPLinear())
    with pytest.raises(ValueError, match="shape"):
        convert(torch.zeros(3, 3), "eps", "x0", x, 0.5, VPLinear())
