import math

import pytest
import torch
from torch import distributions as D

from varbook.estimators import QuadraticToy, bonferroni_z, exact_gradient, gradient_stats
from varbook.runtime import History
from varbook.vi import benchmarks as bench
from varbook.vi import elbo, estimate
from varbook.vi.models import BernoulliVAE, cone_log_evidence

F64 = torch.float64


def test_cone_objectives_stack_seeds():
    objectives = bench.cone_objectives(3)
    assert list(objectives) == list(bench.CONE_TABLE4)
    torch.manual_seed(0)
    for name, (make, module, particles) in objectives.items():
        assert particles == (1 if name == "IWELBO(5)" else 64)
        assert estimate(make(7)).shape == (7, 3)  # one estimate per particle and stacked seed
        assert all(p.shape[0] == 3 for p in module.parameters())


def test_fit_cone_rows_are_lower_bounds_and_histories_are_recorded():
    torch.manual_seed(0)
    rows, histories = bench.fit_cone(
        bench.cone_objectives(2), 10, cone_log_evidence(5.0), eval_particles=300, record_every=5
    )
    assert set(rows) == set(bench.CONE_TABLE4)
    for name, row in rows.items():
        assert row["paper (Table 4)"] == bench.CONE_TABLE4[name]
        assert row["below log p(z=5)"] is True  # every objective is a lower bound
        assert row["s.e. (300 samples)"] > 0
        assert isinstance(histories[name], History) and histories[name]["step"] == [0, 5]


def test_fit_cone_gives_each_objective_its_own_number_of_steps():
    objectives = bench.cone_objectives(1)
    counts = dict.fromkeys(objectives, 2) | {"IWELBO(5)": 4}
    _, histories = bench.fit_cone(objectives, counts, cone_log_evidence(5.0), eval_particles=10, record_every=1)
    assert histories["IWELBO(5)"]["step"] == [0, 1, 2, 3] and histories["ELBO"]["step"] == [0, 1]
    with pytest.raises(ValueError, match="one for each"):
        bench.fit_cone(objectives, {"ELBO": 2}, cone_log_evidence(5.0))


def test_fit_cone_steps_on_the_sum_of_the_objectives_surrogates():
    objectives = bench.cone_objectives(2)  # two stacked seeds: each keeps its own step size
    alone = bench.cone_objectives(2)
    torch.manual_seed(0)
    bench.fit_cone(objectives, 3, cone_log_evidence(5.0), eval_particles=10)
    torch.manual_seed(0)  # the same draws in the same order: three plain SGD steps on the summed surrogates
    programs = {name: make(p) for name, (make, _, p) in alone.items()}
    opt = torch.optim.SGD([p for _, m, _ in alone.values() for p in m.parameters()], lr=1e-3)
    for _ in range(3):
        total = torch.stack([estimate(program).mean(0).sum() for program in programs.values()]).sum()
        opt.zero_grad()
        (-total).backward()
        opt.step()
    for name in objectives:
        for p, q in zip(objectives[name][1].parameters(), alone[name][1].parameters(), strict=True):
            assert torch.allclose(p, q)


def test_fit_discrete_vae_is_seeded_and_its_curve_is_the_exact_elbo():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(40, 64, generator=g) > 0.5).to(F64)

    def make(vae):
        return elbo(vae.log_joint, vae.guide, strategy="reinforce")

    vae, curve, ms = bench.fit_discrete_vae(make, x[:32], x[32:], 5, seed=3, batch=8, eval_every=2)
    assert isinstance(vae, BernoulliVAE) and ms > 0
    assert curve["step"] == [0, 2, 4]
    with torch.no_grad():
        assert curve.last("test_elbo") == pytest.approx(float(vae.exact_elbo(x[32:]).mean()))
    _, again, _ = bench.fit_discrete_vae(make, x[:32], x[32:], 5, seed=3, batch=8, eval_every=2)
    assert again["test_elbo"] == curve["test_elbo"]


def test_exact_elbo_is_the_models_exact_elbo():
    torch.manual_seed(0)
    vae = BernoulliVAE(64, n_latent=5, hidden=16).to(F64)
    x = (torch.rand(7, 64) > 0.5).to(F64)
    with torch.no_grad():
        assert torch.allclose(bench.exact_elbo(vae, x), vae.exact_elbo(x), rtol=0, atol=1e-10)


def test_cone_gap_se_adds_the_variances_of_the_two_objectives():
    se = {"ELBO": 0.03, "IWELBO(5)": 0.04, "HVI": 0.1, "IWHVI(5)": 0.0, "DIWHVI(5,5)": 0.05}
    gaps = bench.cone_gap_se(se)
    assert gaps["iwelbo_gain"] == pytest.approx(0.05) and gaps["iwhvi_gain"] == pytest.approx(0.1)
    assert set(gaps) == set(bench.cone_gaps(dict.fromkeys(se, 0.0)))


def toy_program(loss, strategy):
    def program(t, logits):
        return -loss(t.sample("h", bench.bernoulli_guide(logits), strategy))

    return program


def test_gradient_draws_are_unbiased_and_enum_is_exact():
    g = torch.Generator().manual_seed(0)
    loss = QuadraticToy(6, offset=3.0, generator=g)
    a = torch.randn(6, generator=g, dtype=F64)
    exact = -exact_gradient(a, loss)
    grads, ms = bench.gradient_draws(toy_program(loss, "enum"), a, 3)
    assert grads.shape == (3, 6) and ms > 0
    assert torch.allclose(grads, exact.expand(3, -1), atol=1e-12)
    torch.manual_seed(1)
    grads, _ = bench.gradient_draws(toy_program(loss, "reinforce"), a, 5000)
    assert gradient_stats(grads, exact).max_abs_z < bonferroni_z(6, alpha=0.001)


def test_variance_rows():
    g = torch.Generator().manual_seed(0)
    loss = QuadraticToy(4, offset=3.0, generator=g)
    logits = torch.randn(2, 4, generator=g, dtype=F64)  # two independent rows of choices
    exact = -torch.stack([exact_gradient(row, loss) for row in logits])
    torch.manual_seed(2)
    runs = [("ENUM", "enum", 3), ("REINFORCE", "reinforce", 400), ("MVD", "mvd", 400)]
    rows = bench.variance_rows(lambda s: toy_program(loss, s), logits, exact, runs)
    assert rows["ENUM"]["tr Var"] == pytest.approx(0.0, abs=1e-20) and rows["ENUM"]["max |bias|/se"] == 0.0
    assert rows["ENUM"]["|bias|"] < 1e-12
    assert rows["REINFORCE"]["tr Var"] > rows["MVD"]["tr Var"] > 0
    assert all(set(r) == {"tr Var", "max |bias|/se", "|bias|"} for r in rows.values())


def test_wrt_probs_is_the_gradient_with_respect_to_the_probabilities():
    g = torch.Generator().manual_seed(0)
    loss = QuadraticToy(5, offset=3.0, generator=g)
    a = torch.randn(5, generator=g, dtype=F64)
    grads, _ = bench.gradient_draws(toy_program(loss, "enum"), a, 2)
    p = torch.sigmoid(a).requires_grad_(True)

    def program(t, probs):
        return -loss(t.sample("h", D.Independent(D.Bernoulli(probs=probs), 1), "enum"))

    (by_p,) = torch.autograd.grad(estimate(program, p), p)
    wrong = bench.wrt_probs(grads, a)
    assert wrong.shape == grads.shape
    assert torch.allclose(wrong, by_p.expand(2, -1), atol=1e-12)  # the chain-rule factor p(1 - p) is missing
    assert not torch.allclose(wrong, grads)


def test_cone_controls_break_the_bound_and_drop_the_particles():
    log_evidence = cone_log_evidence(5.0)
    objectives = bench.cone_objectives(2)
    with torch.no_grad():  # a narrow ring: q(z | u) is tiny for a u that did not generate z
        for name in ("HVI", "IWHVI(5)", "DIWHVI(5,5)"):
            objectives[name][1].log_sigma.fill_(math.log(0.1))
    torch.manual_seed(0)
    rows = bench.cone_controls(objectives, log_evidence, eval_particles=400)
    rings = ("HVI", "IWHVI(5)", "DIWHVI(5,5)")
    assert set(rows) == {("u0 left out", n) for n in rings} | {
        ("one particle", n) for n in ("IWELBO(5)", "IWHVI(5)", "DIWHVI(5,5)")
    }
    for name in rings:
        row = rows["u0 left out", name]
        assert row["below log p(z=5)"] is False and row["ours"] > log_evidence
    # one particle: the poorer objective's program at the richer objective's parameters
    torch.manual_seed(1)
    hvi = bench.evaluate_cone(objectives["HVI"][0](20_000), log_evidence)["ours"]
    torch.manual_seed(1)
    iwhvi_m1 = bench.cone_controls(objectives, log_evidence, eval_particles=20_000)["one particle", "IWHVI(5)"]
    assert iwhvi_m1["ours"] == pytest.approx(hvi, abs=0.05)  # two rings with the same sigma
    assert iwhvi_m1["below log p(z=5)"] is True


def test_cone_gaps_and_table4_deviations():
    values = dict(bench.CONE_TABLE4)
    gaps = bench.cone_gaps(values)
    assert gaps["iwhvi_gain"] == pytest.approx(1.57) and gaps["diwhvi_gain"] == pytest.approx(0.85)
    assert gaps["iwelbo_gain"] == pytest.approx(0.29) and gaps["elbo_over_iwhvi"] == pytest.approx(0.10)
    assert bench.table4_deviations(values) == [0.0] * 5
    values["IWELBO(5)"] -= 0.3  # twice its tolerance of 0.15
    assert bench.table4_deviations(values)[1] == pytest.approx(2.0)


def test_estimate_ms_times_every_strategy_at_the_same_batch():
    g = torch.Generator().manual_seed(0)
    loss = QuadraticToy(6, offset=3.0, generator=g)
    a = torch.randn(6, generator=g, dtype=F64)
    seen: dict[str, set[int]] = {"MVD": set(), "ENUM": set()}

    def make(strategy):
        name = "MVD" if strategy == "mvd" else "ENUM"

        def program(t, logits):
            seen[name].add(logits.shape[0])  # the batch of estimates this strategy is timed at
            return toy_program(loss, strategy)(t, logits)

        return program

    ms = bench.estimate_ms(make, a, {"MVD": "mvd", "ENUM": "enum"}, n=8, reps=3)
    assert set(ms) == {"MVD", "ENUM"} and all(v > 0 for v in ms.values())
    assert seen == {"MVD": {8}, "ENUM": {8}}  # equal batch: every run of both saw 8 copies


def test_sgd_step_and_interleaved_timing_see_the_same_minibatches():
    w = torch.nn.Parameter(torch.zeros(3))
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    step = bench.sgd_step(lambda xb: ((xb - w) ** 2).sum(-1).mean(), [w], lr=0.1)
    step(x)
    assert torch.allclose(w.detach(), 0.2 * x.mean(0))  # one step from 0: w = lr * 2 * mean(x)
    seen: dict[str, list[torch.Tensor]] = {"a": [], "b": []}
    steppers = {name: (lambda xb, name=name: seen[name].append(xb)) for name in seen}
    ms = bench.median_step_ms(steppers, x, 4, generator=torch.Generator().manual_seed(1), batch=5, warmup=2)
    assert set(ms) == {"a", "b"} and all(v >= 0 for v in ms.values())
    assert len(seen["a"]) == 6 and all(torch.equal(p, q) for p, q in zip(seen["a"], seen["b"], strict=True))
