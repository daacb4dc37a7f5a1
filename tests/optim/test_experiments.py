import math

import pytest
import torch

from varbook.data.tables import Table
from varbook.optim import experiments as ex
from varbook.optim import sso
from varbook.optim.imitation import DoubleIntegrator
from varbook.runtime import History


def small_table(n=120, d=5, k=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64) * torch.logspace(0, 1, d, dtype=torch.float64)
    y = (x @ torch.randn(d, k, generator=gen, dtype=torch.float64)).argmax(1)
    return Table(x, y, k, "toy")


def test_runs_share_initial_weights_and_batches():
    tab = small_table()
    a = ex.run(tab, ex.optimiser_maker(0.1), 10, 20, seed=3, k=3)
    b = ex.run(tab, ex.optimiser_maker(0.1), 10, 20, seed=3, k=3)
    assert a["loss"] == b["loss"] and a["oracle_calls"][-1] == 10
    c = ex.run(tab, ex.optimiser_maker(0.1), 10, 20, seed=4, k=3)
    assert a["loss"][0] != c["loss"][0]  # another seed, other initial weights


def test_compare_tunes_and_counts_equal_oracle_calls():
    tab = small_table()
    runs, best = ex.compare(tab, [1, 3], [0.01, 0.1, 1.0], 12, 20, seed=0, peers=False)
    assert set(runs) == {"SGD", "SLS", "SSO m=1", "SSO m=3"} and set(best) == {"SGD"}
    assert all(h.last("oracle_calls") == 12 for h in runs.values())
    both, _ = ex.compare(tab, [1, 3], [0.1], 12, 20, seed=0, peers=False, etas=("armijo", 2.0))
    assert {"SSO m=1, η=2", "SSO m=3, η=2", "SSO m=1", "SSO m=3"} <= set(both)
    table_eta = ex.run(tab, ex.surrogate_maker(3, eta=2.0), 12, 20, seed=0, k=3)
    assert both["SSO m=3, η=2"]["loss"] == table_eta["loss"]  # the constant target step, not SSO-SLS
    assert both["SSO m=3, η=2"]["loss"] != both["SSO m=3"]["loss"]
    with pytest.raises(ValueError, match="at least one"):
        ex.compare(tab, [1], [0.1], 2, 20, seed=0, peers=False, etas=())
    # the table's 3 classes get 3 logits (not 10): the same as tuning a 3-logit model directly
    _, _, finals = ex.tuned(tab, torch.optim.SGD, [0.01, 0.1, 1.0], 12, 20, 0, k=3)
    assert runs["SGD"].last("loss") == min(finals.values())
    sso3 = ex.run(tab, ex.surrogate_maker(3, eta="armijo"), 12, 20, seed=0, k=3)
    assert runs["SSO m=3"]["loss"] == sso3["loss"]


def test_tune_skips_diverging_rates():
    def fake(lr):
        if lr > 1:
            raise FloatingPointError("diverged")
        return History(loss=[abs(lr - 0.5)])

    best, _, finals = sso.tune(fake, [0.1, 0.5, 10.0])
    assert best == 0.5 and finals[10.0] == math.inf
    with pytest.raises(FloatingPointError, match="every learning rate"):
        sso.tune(fake, [10.0])
    with pytest.raises(ValueError, match="empty"):
        sso.tune(fake, [])


def test_largest_rise_and_inner_solvers():
    assert ex.largest_rise([3.0, 2.0, 2.5]) == pytest.approx(0.25)
    assert ex.largest_rise([3.0, 2.0, 1.0]) < 0
    with pytest.raises(ValueError, match="two losses"):
        ex.largest_rise([1.0])
    tab = small_table(d=4, k=10)
    tab = Table(tab.x, tab.y % 10, 10, "toy")
    out = ex.inner_solvers(tab, m=3, outer_steps=4, batch_size=16, seed=0)
    assert set(out) == {"armijo", "lbfgs"} and all(v["oracle_calls"] == 4 for v in out.values())
    # one outer step: both solvers start from the same weights, batch and target step, so their drops
    # compare. The surrogate of a linear model is a quadratic in the weights; 50 L-BFGS iterations
    # reach its minimum (the projection), which 3 Armijo steps on these scaled columns stay short of
    short = ex.inner_solvers(tab, m=3, outer_steps=1, batch_size=16, seed=0, solvers=("armijo",))
    exact = ex.inner_solvers(tab, m=50, outer_steps=1, batch_size=16, seed=0, solvers=("lbfgs", "armijo"))
    assert 0 < short["armijo"]["surrogate_drop"] < exact["lbfgs"]["surrogate_drop"]
    best = exact["lbfgs"]["surrogate_drop"] * (1 + 1e-9)
    assert exact["armijo"]["surrogate_drop"] <= best  # nothing beats the minimum


def test_dagger_runs_and_mlp():
    runs, control, expert = ex.dagger_runs(
        DoubleIntegrator(), [0.01, 0.1], [5], 2, 0, n_envs=16, horizon=10, labels_per_round=64
    )
    assert len(runs) == 3 and "SSO m=5" in runs
    assert any(name.startswith("SSO-SLS") for name in runs)  # the SSO-SLS arm runs too
    assert control < expert
    # every method improves on the zero policy it starts from (the LQR gain is optimal for the
    # infinite horizon, not for this clipped 10-step one, so we do not compare with the expert)
    assert all(h.last("return") > h["return"][0] for h in runs.values())
    _, overshoot, _ = ex.dagger_runs(
        DoubleIntegrator(), [0.1], [5], 4, 0, control_eta=2.5, n_envs=16, horizon=10, labels_per_round=64
    )
    assert overshoot < runs["SSO m=5"].last("return")  # eta = 2.5 on the squared loss overshoots
    assert ex.mlp_model(3, 2, 0, width=8)(torch.zeros(4, 3, dtype=torch.float64)).shape == (4, 2)
