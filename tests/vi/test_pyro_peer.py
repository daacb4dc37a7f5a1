import math

import pytest
import torch

pyro = pytest.importorskip("pyro")

from pyro import poutine  # noqa: E402

from varbook.vi import pyro_peer  # noqa: E402
from varbook.vi.models import GaussianVAE, MeanFieldNormal, cone_log_joint  # noqa: E402


def test_pyro_cone_model_has_our_log_joint():
    xy = torch.tensor([1.3, -0.4], dtype=torch.float64)
    conditioned = poutine.condition(pyro_peer.cone_model, data={"x": xy[0], "y": xy[1]})
    trace = poutine.trace(conditioned).get_trace()
    assert float(trace.log_prob_sum()) == pytest.approx(float(cone_log_joint(xy)), abs=1e-10)


def test_compare_cone_agrees_with_pyro():
    q = MeanFieldNormal(torch.tensor([2.0, 0.5]), torch.tensor([-1.0, -1.5]))
    torch.manual_seed(0)
    rows = pyro_peer.compare_cone(q, particles=20_000, repeats=300)
    assert set(rows) == {"ELBO", "IWELBO(5)"}
    for row in rows.values():
        assert abs(row["ours"] - row["Pyro"]) < 5 * row["s.e. of the difference"] + 0.02
    assert rows["IWELBO(5)"]["ours"] > rows["ELBO"]["ours"]  # the IWELBO is the tighter bound
    for row in rows.values():  # the control: a prior of standard deviation 100 costs about 2 log 10 nats
        assert row["control: prior std 100"] - row["ours"] == pytest.approx(-2 * math.log(10), abs=0.1)


def test_vae_svi_step_trains_the_same_parameters():
    torch.manual_seed(0)
    vae = GaussianVAE(d_x=12, hidden=8, n_latent=2)
    x = (torch.rand(6, 12) > 0.5).float()
    before = [p.detach().clone() for p in vae.parameters()]
    loss = pyro_peer.vae_svi_step(vae, lr=1e-2)(x)
    assert math.isfinite(loss)
    assert all(not torch.equal(b, p) for b, p in zip(before, vae.parameters(), strict=True))
