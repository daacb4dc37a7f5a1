import math

import pytest
import torch

pytest.importorskip("torchsde")

from varbook.sde import peers  # noqa: E402


def test_moment_z_sees_a_shifted_mean_and_a_wrong_variance():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(10000, generator=gen), torch.randn(10000, generator=gen)
    assert peers.moment_z(a, b) < 4
    assert peers.moment_z(a + 0.2, b) > 10  # mean off by 0.2 standard deviations
    assert peers.moment_z(1.2 * a, b) > 10  # variance 44 % too large, same mean


def test_ou_against_torchsde_agree_with_each_other_and_the_closed_form():
    table, z, z_control = peers.ou_against_torchsde(4000, steps=50, generator=torch.Generator().manual_seed(0))
    assert set(table) == {"varbook.sde", "torchsde", "exact"}
    mean, var, _ = table["exact"]
    assert mean == pytest.approx(2 * math.exp(-1)) and math.isnan(table["exact"][2])
    for name in ("varbook.sde", "torchsde"):
        m, v, ms = table[name]
        assert abs(m - mean) < 4 * math.sqrt(var / 4000) + 0.01  # Euler bias of order h
        assert v == pytest.approx(var, rel=0.1) and ms > 0
    assert 0 <= z < 4
    assert z_control > 20  # the increment scaled by h instead of sqrt(h): the variance collapses
