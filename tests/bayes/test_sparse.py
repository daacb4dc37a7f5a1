import math

import pytest
import torch

from varbook.bayes import (
    CRITERIA,
    BayesMLP,
    DropGrowScheduler,
    MeanFieldLinear,
    accuracy,
    brier,
    drop_agreement,
    drop_score,
    ece,
    mc_predict,
    mean_field_layers,
    nll,
    random_masks,
    reliability,
    train_bnn,
    training_flops,
)
from varbook.data import Split
from varbook.runtime import History, NonFiniteLossError


def tiny(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(200, 10, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return Split(x[:150], y[:150], x[150:], y[150:], (2, 5), n_classes=2)


def test_scheduler_keeps_the_exact_density_and_zeroes_inactive_entries():
    torch.manual_seed(0)
    model = BayesMLP([10, 40, 2])
    layers = mean_field_layers(model)
    random_masks(layers, 0.2, torch.Generator().manual_seed(0))
    targets = [round(0.2 * layer.mu.numel()) for layer in layers]
    sched = DropGrowScheduler(layers, 0.2, delta_t=2, t_end=40)
    checks = []
    run = train_bnn(
        model,
        tiny(),
        epochs=10,
        batch_size=32,
        lr=0.05,
        scheduler=sched,
        callback=lambda epoch: checks.append(sched.check_density()),
    )
    assert run.update_steps > 5 and all(checks)
    assert [layer.active() for layer in layers] == targets
    assert all(h["active"] == targets for h in sched.history)
    assert sum(h["moved"] for h in sched.history) > 0
    for layer in layers:
        assert (layer.mu[~layer.mask] == 0).all() and (layer.sigma[~layer.mask] == 0).all()


def test_update_needs_a_dense_gradient():
    model = BayesMLP([4, 6, 2])
    layers = mean_field_layers(model)
    random_masks(layers, 0.5)
    sched = DropGrowScheduler(layers, 0.5, delta_t=1, t_end=10)
    with pytest.raises(RuntimeError, match="dense gradient"):
        sched.update(1)
    with pytest.raises(ValueError, match="unknown drop criterion"):
        DropGrowScheduler(layers, 0.5, delta_t=1, t_end=10, criterion="magnitude")


def test_grow_uses_the_dense_gradient():
    torch.manual_seed(1)
    model = BayesMLP([6, 5])
    (layer,) = mean_field_layers(model)
    random_masks([layer], 0.4, torch.Generator().manual_seed(1))
    sched = DropGrowScheduler([layer], 0.4, delta_t=1, t_end=100, alpha=0.5)
    sched.dense_gradients(True)
    model(torch.randn(16, 6)).pow(2).sum().backward()
    grad = layer.weight_mean.grad.clone()
    before = layer.mask.clone()
    assert grad[~before].abs().sum() > 0  # the gradient is dense, not masked
    n = int(12 * sched.drop_fraction(1))
    score = drop_score(layer.mu.detach().flatten(), torch.nn.functional.softplus(layer.rho.detach()).flatten())
    score[~before.flatten()] = float("inf")
    kept = before.flatten().clone()
    kept[score.topk(n, largest=False).indices] = False
    sched.update(1)
    # the n weights off the reduced mask with the largest |dL/dmu| are active now, just-dropped ones included
    off = (~kept).nonzero().flatten()
    expected = off[grad.flatten()[off].abs().topk(n).indices]
    grown = (layer.mask.flatten() & ~kept).nonzero().flatten()
    assert set(grown.tolist()) == set(expected.tolist())


def test_a_just_dropped_weight_can_grow_back_and_keeps_its_posterior():
    torch.manual_seed(2)
    layer = MeanFieldLinear(4, 1)
    layer.mask.copy_(torch.tensor([[True, True, False, False]]))
    with torch.no_grad():
        layer.mu.copy_(torch.tensor([[0.01, 1.0, 0.0, 0.0]]))  # weight 0 has the lowest score and is dropped
        layer.rho[0, 0] = -3.0
    sched = DropGrowScheduler([layer], 0.5, delta_t=1, t_end=10**6, alpha=0.99, criterion="mean")
    layer.weight_mean = torch.zeros(1, 4)
    layer.weight_mean.grad = torch.tensor([[5.0, 0.0, 1.0, 0.5]])  # ... but has the largest dense gradient
    assert sched.update(1) == 0  # it grows back: nothing moved
    assert layer.mask.tolist() == [[True, True, False, False]]
    assert float(layer.mu.detach()[0, 0]) == pytest.approx(0.01) and float(layer.rho.detach()[0, 0]) == -3.0
    layer.weight_mean.grad = torch.tensor([[0.0, 0.0, 1.0, 0.5]])  # now an inactive weight wins
    mean_rho = float(layer.rho.detach()[layer.mask].mean())
    assert sched.update(1) == 1 and layer.mask.tolist() == [[False, True, True, False]]
    assert float(layer.mu.detach()[0, 2]) == 0 and float(layer.rho.detach()[0, 2]) == pytest.approx(mean_rho)


def test_drop_scores():
    mu = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64)
    sigma = torch.tensor([1.0, 0.5, 0.5], dtype=torch.float64)
    assert torch.allclose(drop_score(mu, sigma, "snr"), torch.tensor([0.0, 2.0, 4.0], dtype=torch.float64))
    folded = drop_score(mu, sigma, "e_mean_abs")
    samples = (
        mu + sigma * torch.randn(400000, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ).abs()
    assert torch.allclose(folded, samples.mean(0), atol=5e-3)
    assert torch.allclose(drop_score(mu, sigma, "snr_mean_abs"), samples.mean(0) / samples.std(0), rtol=2e-2)
    e_exp = drop_score(mu, sigma, "e_exp_mean_abs")
    assert torch.allclose(e_exp, samples.exp().mean(0), rtol=2e-2)
    for c in CRITERIA:
        assert drop_score(mu, sigma, c).shape == (3,)


def test_metrics_hand_computed():
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]], dtype=torch.float64)
    y = torch.tensor([0, 1, 1])
    assert accuracy(probs, y) == pytest.approx(2 / 3)
    assert nll(probs, y) == pytest.approx(-(math.log(0.9) + math.log(0.4) + math.log(0.8)) / 3)
    assert brier(probs, y) == pytest.approx((0.02 + 0.72 + 0.08) / 3)
    r = reliability(probs, y, n_bins=2)
    assert r["count"].tolist() == [0.0, 3.0]
    assert ece(probs, y, n_bins=2) == pytest.approx(abs(2 / 3 - (0.9 + 0.6 + 0.8) / 3))
    with pytest.raises(ValueError):
        nll(probs, y[:2])


def test_mc_predict_averages_probabilities():
    torch.manual_seed(2)
    model = BayesMLP([3, 4, 2], init_sigma=0.5)
    p = mc_predict(model, torch.randn(6, 3), 20)
    assert torch.allclose(p.sum(1), torch.ones(6)) and model.training
    with pytest.raises(ValueError):
        mc_predict(model, torch.randn(2, 3), 0)


def test_training_flops_scale_with_density():
    dense = BayesMLP([10, 20, 2])
    sparse = BayesMLP([10, 20, 2])
    random_masks(mean_field_layers(sparse), 0.1)
    ratio = training_flops(sparse, 32, 100) / training_flops(dense, 32, 100)
    assert ratio == pytest.approx((20 + 4) / 240, rel=1e-9)  # round(0.1 * 200), round(0.1 * 40)


def test_nan_loss_stops_training():
    data = tiny()
    data.x_train[0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError):
        train_bnn(BayesMLP([10, 4, 2]), data, epochs=1, batch_size=150)


def test_train_bnn_follows_the_training_loop_contract():
    torch.manual_seed(0)
    model = BayesMLP([10, 12, 2])
    layers = mean_field_layers(model)
    random_masks(layers, 0.5, torch.Generator().manual_seed(0))
    sched = DropGrowScheduler(layers, 0.5, delta_t=2, t_end=8)
    run = train_bnn(model, tiny(), epochs=3, batch_size=32, scheduler=sched, generator=torch.Generator().manual_seed(0))
    assert isinstance(run, History) and set(run) == {"loss", "test_accuracy"}
    assert len(run["loss"]) == 3 and run.last("loss") == run["loss"][-1]
    assert run.steps == 3 * 5 and run.update_steps == 3  # t = 2, 4, 6 (t_end = 8)
    assert [h["t"] for h in sched.history] == [2, 4, 6] and len(run.mask_snapshots) == 3


def test_update_iterations_replace_the_optimiser_step():
    # one batch per epoch: t = 0 is an SGD step, t = 1 an update step that moves no weight (alpha = 0);
    # the means must end where a single SGD step leaves them
    data = tiny()
    data = Split(data.x_train[:32], data.y_train[:32], data.x_test, data.y_test, (2, 5), n_classes=2)

    def fit(epochs, with_update):
        torch.manual_seed(0)
        model = BayesMLP([10, 2])
        layers = mean_field_layers(model)
        random_masks(layers, 0.5, torch.Generator().manual_seed(0))
        sched = DropGrowScheduler(layers, 0.5, delta_t=1, t_end=2, alpha=0.0) if with_update else None
        run = train_bnn(model, data, epochs=epochs, batch_size=32, lr=0.05, scheduler=sched)
        return layers[0].mu.detach(), run

    mu_update, run = fit(2, True)
    mu_single, _ = fit(1, False)
    mu_two, _ = fit(2, False)
    assert run.update_steps == 1 and run.steps == 2
    assert torch.equal(mu_update, mu_single) and not torch.equal(mu_update, mu_two)


def test_sigma_learns_only_with_its_own_learning_rate():
    # the KL to N(0, 0.1^2) rewards variance while sigma << 0.1; lr_rho routes its gradient to rho alone
    def sigma_after(lr_rho):
        model = BayesMLP([10, 16, 2], init_sigma=6e-4, init_sigma_std=5e-4, generator=torch.Generator().manual_seed(0))
        before = [layer.sigma.detach().clone() for layer in mean_field_layers(model)]
        mu0 = [layer.mu.detach().clone() for layer in mean_field_layers(model)]
        train_bnn(model, tiny(), epochs=30, lr=0.0, lr_rho=lr_rho, kl_scale=0.01, generator=torch.Generator())
        layers = mean_field_layers(model)
        assert all(torch.equal(m, layer.mu) for m, layer in zip(mu0, layers, strict=True))  # lr = 0 for the means
        return [(layer.sigma.detach() / b).median() for b, layer in zip(before, layers, strict=True)]

    assert all(r == 1 for r in sigma_after(0.0))

    assert all(r > 2 for r in sigma_after(300.0))


def test_drop_agreement_separates_criteria_only_when_sigma_varies():
    g = torch.Generator().manual_seed(0)
    spread = [MeanFieldLinear(50, 40, init_sigma=6e-4, init_sigma_std=5e-4, generator=g)]
    constant = [MeanFieldLinear(50, 40, init_sigma=6e-4, generator=g)]
    for layers in (spread, constant):
        random_masks(layers, 0.5, g)
    crit = ("snr", "snr_mean_abs", "mean", "e_mean_abs")
    with_spread, without = drop_agreement(spread, crit), drop_agreement(constant, crit)
    assert with_spread["snr"] == with_spread["snr_mean_abs"] == 1.0  # the same ranking, always
    assert with_spread["mean"] < 0.8  # |mu| drops other weights once sigma differs between weights
    assert all(v == 1.0 for v in without.values())  # one sigma for all: every criterion ranks by |mu|
