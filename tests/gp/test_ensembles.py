"""Tests of varbook.gp.ensembles: finite MLP ensembles with a fixed or an inverse-gamma last-layer scale."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from varbook.data import Split
from varbook.data.shifts import shift_tests
from varbook.gp import ensembles
from varbook.nn import MLP


def test_draw_scales_are_inverse_gamma():
    s2 = ensembles.draw_scales("inverse gamma", 20_000, (3.0, 2.0), torch.Generator().manual_seed(0)) ** 2
    # sigma^2 ~ InvGamma(3, 2): a KS test against scipy's law, and the mean beta / (alpha - 1) = 1
    assert stats.kstest(s2.numpy(), stats.invgamma(3.0, scale=2.0).cdf).pvalue > 0.01
    assert abs(float(s2.mean()) - 1.0) < 4 * math.sqrt(1.0) / math.sqrt(20_000)  # Var = 1 for (3, 2)
    torch.testing.assert_close(ensembles.draw_scales("fixed", 4), torch.ones(4, dtype=torch.float64))


def test_scaled_mlp_multiplies_the_readout_and_starts_at_the_prior_variance():
    torch.manual_seed(0)
    mlp = MLP(8, [2000], 3)
    x = torch.randn(5, 8)
    model = ensembles.ScaledMLP(mlp, sigma=3.0, last_w_std=0.5)
    torch.testing.assert_close(model(x), 3.0 * mlp(x))
    w = mlp[-1].weight.detach()
    assert float(mlp[-1].bias.detach().abs().max()) == 0.0
    # readout weights N(0, last_w_std^2 / n): variance 0.25 / 2000, within 4 standard errors
    var, target = float(w.var()), 0.25 / 2000
    assert abs(var - target) < 4 * target * math.sqrt(2 / w.numel())
    # the scale is fixed: a buffer, not a trained parameter
    assert "sigma" in dict(model.named_buffers()) and "sigma" not in dict(model.named_parameters())


def test_train_member_keeps_the_best_validation_epoch():
    # random labels: a fast learner overfits, so the validation NLL rises and the last epoch is not the best
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 4, generator=g), torch.randint(0, 3, (300,), generator=g)
    model = ensembles.ScaledMLP(MLP(4, [64, 64], 3), sigma=1.0)
    xv, yv = x[:60], y[:60]

    def valid_nll() -> float:
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(model(xv), yv))

    start = valid_nll()
    history = ensembles.train_member(model, x[60:], y[60:], xv, yv, epochs=8, batch_size=40, lr=3e-2, generator=g)
    assert len(history["valid_nll"]) == 8 and len(history["loss"]) == 8 * 6
    best = min([start, *history["valid_nll"]])
    assert best < history["valid_nll"][-1] - 0.05  # the test can see whether the best epoch is loaded
    assert valid_nll() == pytest.approx(best, rel=1e-6)


def test_average_predictions():
    logits = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0))
    probs, official = ensembles.average_predictions(logits)
    torch.testing.assert_close(probs, sum(torch.softmax(f, -1) for f in logits) / 3)
    torch.testing.assert_close(official, torch.softmax((logits[0] + logits[1] + logits[2]) / 3, -1))
    with pytest.raises(ValueError, match="members"):
        ensembles.average_predictions(logits[0])


def test_scale_ensemble_benchmark_rows():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 4
    x = (torch.rand(200, 9, generator=g) * 0.3 + 0.7 * torch.nn.functional.one_hot(y * 2, 9).float()).clamp(0, 1)
    s = Split(x[:150], y[:150], x[150:], y[150:], (3, 3), 4)
    kept, _, tests = shift_tests(s, (3,), generator=g)
    rows = ensembles.scale_ensemble_benchmark(
        kept, tests, n_members=2, hidden=(16,), epochs=3, batch_size=25, generator=g
    )
    assert [(r["model"], r["test"]) for r in rows] == [(k, t) for k in ensembles.SCALES for t in tests]
    clean = {r["model"]: r for r in rows if r["test"] == "clean"}
    assert clean["fixed"]["accuracy"] > 0.8 and clean["fixed"]["scales"] == [1.0, 1.0]
    assert all(r["nll"] > 0 and r["nll (logit average)"] > 0 for r in rows)
    assert clean["inverse gamma"]["scales"] != [1.0, 1.0]


def test_bad_input():
    with pytest.raises(ValueError, match="kind"):
        ensembles.draw_scales("gamma", 3)
    with pytest.raises(ValueError, match="n_members"):
        ensembles.draw_scales("fixed", 0)
    with pytest.raises(ValueError, match="positive"):
        ensembles.ScaledMLP(MLP(2, [4], 2), sigma=0.0)
    model = ensembles.ScaledMLP(MLP(2, [4], 2), sigma=1.0)
    x, y = torch.zeros(4, 2), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match="epochs"):
        ensembles.train_member(model, x, y, x, y, epochs=0)
    s = Split(torch.rand(6, 4), torch.tensor([0, 1, 2] * 2), torch.rand(3, 4), torch.tensor([0, 1, 2]), (2, 2), 3)
    with pytest.raises(ValueError, match="valid_fraction"):
        ensembles.scale_ensemble_benchmark(s, {"clean": s.x_test}, valid_fraction=1.0)
    with pytest.raises(ValueError, match="one row per label"):
        ensembles.scale_ensemble_benchmark(s, {"clean": s.x_test[:2]})
