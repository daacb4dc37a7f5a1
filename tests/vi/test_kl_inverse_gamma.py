"""Tests of varbook.vi.kl.inverse_gamma_kl against Monte Carlo and torch.distributions."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Gamma, InverseGamma, kl_divergence

from varbook.vi.kl import inverse_gamma_kl


@pytest.mark.parametrize("a1, b1, a2, b2", [(3.0, 2.0, 2.0, 2.0), (1.5, 0.5, 4.0, 3.0), (2.0, 2.0, 2.0, 2.0)])
def test_inverse_gamma_kl_against_monte_carlo(a1, b1, a2, b2):
    torch.manual_seed(0)
    s2 = 1 / Gamma(torch.tensor(a1, dtype=torch.float64), torch.tensor(b1, dtype=torch.float64)).sample((400_000,))
    q = InverseGamma(torch.tensor(a1, dtype=torch.float64), torch.tensor(b1, dtype=torch.float64))
    p = InverseGamma(torch.tensor(a2, dtype=torch.float64), torch.tensor(b2, dtype=torch.float64))
    terms = q.log_prob(s2) - p.log_prob(s2)
    se = float(terms.std() / len(terms) ** 0.5)
    got = float(inverse_gamma_kl(a1, b1, a2, b2))
    assert abs(float(terms.mean()) - got) < 4 * se + 1e-12


def test_inverse_gamma_kl_matches_the_gamma_kl_and_broadcasts():
    a1, b1 = torch.tensor([1.0, 2.0, 5.0]), torch.tensor([0.5, 2.0, 3.0])
    ours = inverse_gamma_kl(a1, b1, 2.0, 2.0)
    ref = kl_divergence(Gamma(a1, b1), Gamma(torch.tensor(2.0), torch.tensor(2.0)))
    torch.testing.assert_close(ours, ref)
    assert ours.shape == (3,)


def test_inverse_gamma_kl_bad_input():
    with pytest.raises(ValueError, match="positive"):
        inverse_gamma_kl(0.0, 1.0, 1.0, 1.0)
