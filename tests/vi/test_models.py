import math

import pytest
import torch
from scipy import integrate

from varbook.vi import elbo, estimate
from varbook.vi.models import (
    BernoulliVAE,
    ConeRingFamily,
    GaussianVAE,
    MeanFieldNormal,
    cone_log_evidence,
    cone_log_joint,
)


def test_cone_evidence_against_adaptive_quadrature():
    def density(s):
        sd = 0.1 + s / 100
        return math.exp(-s / 200) / 200 * math.exp(-0.5 * ((5 - s) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))

    value, _ = integrate.quad(density, 0, 60, points=[5.0], limit=200)
    assert cone_log_evidence(5.0) == pytest.approx(math.log(value), abs=1e-6)
    assert cone_log_evidence(5.0) == pytest.approx(-5.323, abs=5e-4)


def test_cone_log_joint_shapes_and_errors():
    xy = torch.zeros(4, 3, 2, dtype=torch.float64)
    assert cone_log_joint(xy).shape == (4, 3)
    with pytest.raises(ValueError, match="2 coordinates"):
        cone_log_joint(torch.zeros(3))


def test_families_shapes():
    q = MeanFieldNormal(torch.zeros(5, 2), torch.ones(5, 2))()
    assert q.batch_shape == (5,) and q.event_shape == (2,)
    ring = ConeRingFamily(log_sigma=torch.zeros(5, 2))
    u = ring.prior_u().sample((7,))
    assert u.shape == (7, 5)
    assert ring.conditional(u).sample().shape == (7, 5, 2)


def test_bernoulli_vae_exact_elbo_matches_enumeration_strategy():
    torch.manual_seed(0)
    vae = BernoulliVAE(6, n_latent=4, hidden=8).double()
    x = (torch.rand(3, 6) > 0.5).double()
    with torch.no_grad():
        enum = estimate(elbo(vae.log_joint, vae.guide, strategy="enum"), x)
    assert torch.allclose(enum[0], vae.exact_elbo(x))


def test_programmable_elbo_equals_the_handwritten_one():
    vae = GaussianVAE(d_x=12, hidden=8, n_latent=3)
    x = (torch.rand(5, 12) > 0.5).float()
    torch.manual_seed(1)
    ours = estimate(elbo(vae.log_joint, vae.guide), x)[0]
    torch.manual_seed(1)
    hand = vae.handwritten_elbo(x)
    assert torch.allclose(ours, hand, atol=1e-5)
