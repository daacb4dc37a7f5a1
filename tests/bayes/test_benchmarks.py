import pytest
import torch

from varbook.bayes import BNNRun, mean_field_layers, sampling
from varbook.bayes import benchmarks as bench
from varbook.data import Split


def tiny(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(200, 10, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return Split(x[:150], y[:150], x[150:], y[150:], (2, 5), n_classes=2)


def test_run_bnn_is_seeded_and_reports_its_metrics():
    a = bench.run_bnn("ssvi", tiny(), [10, 16, 2], epochs=4, density=0.25, seed=3, delta_t=2, n_samples=2)
    b = bench.run_bnn("ssvi", tiny(), [10, 16, 2], epochs=4, density=0.25, seed=3, delta_t=2, n_samples=2)
    assert a.row == b.row and torch.equal(a.probs, b.probs)
    assert set(a.row) == {"method", "density", "seed", "criterion", "accuracy", "NLL", "ECE", "Brier", "training FLOPs"}
    assert isinstance(a.run, BNNRun) and len(a.run["loss"]) == 4
    assert a.run.update_steps > 0 and a.density_ok == [True] * 4
    assert a.probs.shape == (50, 2) and 0.5 < a.row["accuracy"] <= 1
    with pytest.raises(ValueError, match="unknown method"):
        bench.run_bnn("pruned", tiny(), [10, 2], epochs=1)


def test_static_masks_keep_their_subspace_and_dense_runs_have_none():
    static = bench.run_bnn("static", tiny(), [10, 16, 2], epochs=2, density=0.25)
    dense = bench.run_bnn("dense", tiny(), [10, 16, 2], epochs=2)
    assert static.scheduler is None and static.run.update_steps == 0 and static.row["criterion"] == ""
    assert [layer.active() for layer in mean_field_layers(static.model)] == [40, 8]
    assert all(bool(layer.mask.all()) for layer in mean_field_layers(dense.model))
    # FLOPs follow the active weights: a quarter of the dense count (no update steps)
    assert static.row["training FLOPs"] == pytest.approx(0.25 * dense.row["training FLOPs"])


def test_compare_methods_order_and_invariants():
    runs = bench.compare_methods(tiny(), [10, 16, 2], epochs=2, seeds=[0, 1], densities=[0.25], rigl_density=0.25)
    assert list(runs) == [
        ("dense", 1.0, 0),
        ("dense", 1.0, 1),
        ("ssvi", 0.25, 0),
        ("static", 0.25, 0),
        ("ssvi", 0.25, 1),
        ("static", 0.25, 1),
        ("rigl", 0.25, 0),
        ("rigl", 0.25, 1),
    ]
    assert bench.subspace_invariants(runs.values()) == (True, True, True)
    # a weight that leaks out of the subspace breaks the second invariant
    layer = mean_field_layers(runs[("static", 0.25, 0)].model)[0]
    with torch.no_grad():
        layer.mu[~layer.mask] = 0.1
    assert bench.subspace_invariants(runs.values()) == (True, False, True)


def test_hyperparameter_sweep_rows():
    rows = bench.hyperparameter_sweep(tiny(), [10, 8, 2], epochs=1, init_sigmas=(1e-3,), kl_scales=(0.01, 1.0))
    assert [(r["method"], r["KL scale"]) for r in rows] == [
        ("dense", 0.01),
        ("ssvi", 0.01),
        ("dense", 1.0),
        ("ssvi", 1.0),
    ]
    assert all(r["init σ"] == 1e-3 for r in rows) and rows[1]["density"] == 0.1
    assert not any(r["diverged"] for r in rows)
    # a setting that makes the loss non-finite is recorded as diverged at chance level, not raised
    bad = bench.hyperparameter_sweep(tiny(), [10, 8, 2], epochs=1, init_sigmas=(1e-3,), kl_scales=(float("inf"),))
    assert all(r["diverged"] and r["accuracy"] == 0.5 and r["NLL"] == float("inf") for r in bad)


def test_static_mask_margin_and_its_control():
    def row(method, density, seed, acc, nll):
        return {"method": method, "density": density, "seed": seed, "accuracy": acc, "NLL": nll}

    rows = [row("dense", 1.0, 0, 0.99, 0.05), row("dense", 1.0, 1, 0.99, 0.05)]
    rows += [row("ssvi", 0.1, 0, 0.97, 0.10), row("static", 0.1, 0, 0.95, 0.15)]
    rows += [row("ssvi", 0.1, 1, 0.94, 0.10), row("static", 0.1, 1, 0.95, 0.15)]  # lower accuracy: no win
    rows += [row("ssvi", 0.05, s, 0.96, 0.1) for s in (0, 1)] + [row("static", 0.05, s, 0.93, 0.2) for s in (0, 1)]
    wins, gap = bench.static_mask_margin(rows)
    assert wins == 1 and gap == pytest.approx(3.0)
    assert bench.static_mask_margin(rows, "static") == (0, 0.0)  # the static mask cannot beat itself
    with pytest.raises(ValueError, match="same seeds"):
        bench.static_mask_margin(rows[:-1])


def test_ssvi_without_updates_is_the_static_mask():
    # the premise of the control above: a scheduler that never fires trains exactly the static mask
    never = bench.run_bnn("ssvi", tiny(), [10, 16, 2], epochs=2, density=0.25, seed=1, delta_t=10**6, n_samples=2)
    static = bench.run_bnn("static", tiny(), [10, 16, 2], epochs=2, density=0.25, seed=1, n_samples=2)
    assert never.run.update_steps == 0 and torch.equal(never.probs, static.probs)


def test_redrawn_mask_metrics_lose_what_the_model_learned():
    split = tiny()
    run = bench.run_bnn("ssvi", split, [10, 16, 2], epochs=40, density=0.25, seed=0, delta_t=4, n_samples=2)
    masks = [layer.mask.clone() for layer in mean_field_layers(run.model)]
    wrong = bench.redrawn_mask_metrics(run, split, seed=0, n_samples=2)
    assert set(wrong) == {"accuracy", "NLL"}
    assert run.row["accuracy"] > 0.85  # 0.92: the model has learned the task ...
    assert wrong["accuracy"] < run.row["accuracy"] - 0.1 and wrong["NLL"] > 2 * run.row["NLL"]  # ... and lost it
    assert all(torch.equal(m, layer.mask) for m, layer in zip(masks, mean_field_layers(run.model), strict=True))
    with pytest.raises(ValueError, match="dense"):
        bench.redrawn_mask_metrics(bench.run_bnn("dense", split, [10, 2], epochs=1), split)


def test_rigl_is_deterministic_and_posterior_scales_are_reported():
    split = tiny()
    rigl = bench.run_bnn("rigl", split, [10, 16, 2], epochs=3, density=0.25, seed=0, delta_t=2, n_samples=3)
    assert rigl.row["criterion"] == "mean" and rigl.run.update_steps > 0 and all(rigl.density_ok)
    layers = mean_field_layers(rigl.model)
    with sampling(rigl.model):  # no noise: every sample is the mean network
        assert torch.equal(rigl.model(split.x_test), rigl.model(split.x_test))
    assert not any(layer.rho.requires_grad for layer in layers)  # rho is frozen (it only scores nothing)
    assert rigl.before["sigma"].numel() == sum(layer.active() for layer in layers) == 40 + 8
    ssvi = bench.run_bnn("ssvi", split, [10, 16, 2], epochs=3, density=0.25, seed=0, delta_t=2, n_samples=3)
    assert not torch.equal(ssvi.before["sigma"], ssvi.after["sigma"])
    assert torch.allclose(
        ssvi.after["snr"],
        torch.cat(
            [layer.mu[layer.mask].abs() / layer.sigma[layer.mask] for layer in mean_field_layers(ssvi.model)]
        ).detach(),
    )
    assert bench.subspace_invariants([rigl, ssvi]) == (True, True, True)
