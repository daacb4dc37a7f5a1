"""The experiment loops of the NIW-Meta chapter (varbook.bayes.fewshot_bench) at toy sizes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from varbook.bayes import fewshot_bench as B
from varbook.bayes import meta as M
from varbook.data.fewshot import episodes, sineline

CFG = B.SineLineConfig(hidden=(8,), iterations=20, tasks_per_step=2, pooled_tasks=4)


def test_cost_curve_separates_flat_and_growing_methods():
    costs = B.cost_curve(CFG, steps=(1, 4), n_tasks=2, reps=1)
    assert set(costs) == {"NIW-Meta", "NIW-Meta, no stop-gradient", "MAML, 2nd order", "MAML, 1st order"}
    mem = {k: v["saved_bytes"] for k, v in costs.items()}
    assert mem["NIW-Meta"][0] == mem["NIW-Meta"][1] > 0  # stop-gradient: no SGLD graph
    assert mem["NIW-Meta, no stop-gradient"][1] > 2 * mem["NIW-Meta, no stop-gradient"][0]
    assert mem["MAML, 2nd order"][1] > 2 * mem["MAML, 2nd order"][0]
    assert mem["MAML, 1st order"][0] == mem["MAML, 1st order"][1]
    assert all(t > 0 for c in costs.values() for t in c["backward_s"])


def test_sineline_training_runs_move_the_parameters():
    start = B.make_net(CFG, 0).flat()
    niw, h = B.train_niw(CFG, 0)
    assert len(h["loss"]) == 20 and all(torch.isfinite(torch.tensor(h["loss"])))
    assert not torch.allclose(niw.m0.detach(), start) and niw.m0.shape == start.shape
    for theta, h in [B.train_maml(CFG, 0, True), B.train_maml(CFG, 0, False), B.train_pooled(CFG, 0)]:
        assert theta.shape == start.shape and not torch.allclose(theta, start)
        assert len(h["loss"]) == 20 and all(torch.isfinite(torch.tensor(h["loss"])))


def test_niw_and_maml_see_the_same_task_stream(monkeypatch):
    seen: dict[int, list[torch.Tensor]] = {}
    draw = B.sineline

    def spy(*args, generator=None, **kwargs):
        t = draw(*args, generator=generator, **kwargs)
        seen.setdefault(id(generator), []).append(t.x_support)
        return t

    monkeypatch.setattr(B, "sineline", spy)
    B.train_niw(CFG, 3)
    B.train_maml(CFG, 3, False)
    a, b = seen.values()  # one task generator per run; NIW-Meta's noise has its own
    assert len(a) == len(b) == 20 and all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_maml_predict_and_query_mse():
    net, t = B.make_net(CFG, 0), sineline(3, generator=torch.Generator().manual_seed(0))
    theta = net.flat()
    adapted = M.maml_adapt(net, M.gaussian_nll(CFG.noise), theta, t.x_support, t.y_support, CFG.maml_steps, CFG.maml_lr)
    assert torch.allclose(B.maml_predict(CFG, net, theta, t), net(adapted, t.x_query), atol=1e-6)
    assert B.query_mse(t.y_query, t) == 0.0
    assert B.query_mse(t.y_query + 2.0, t) == pytest.approx(4.0)


FS = B.FewShotConfig(iterations=3, tasks_per_step=2, test_episodes=4, test_query=2, channels=16, chunk=3)


def test_conv4_and_protonet_nll():
    assert B.conv4(8, channels=8)(torch.zeros(5, 1, 8, 8)).shape == (5, 8)
    assert B.conv4(28, channels=8, n_out=3)(torch.zeros(5, 1, 28, 28)).shape == (5, 3)
    z = torch.tensor([[[0.0], [10.0], [0.5], [9.0]]])  # support: class 0 at 0, class 1 at 10
    y = torch.tensor([[0, 1, 0, 1]])
    nll = B.protonet_nll(2, 2)(z, y)
    ref = M.categorical_nll(M.protonet_logits(z[:, :2], y[:, :2], z, 2), y)
    assert torch.allclose(nll, ref) and float(nll) < 1.0  # well separated: near-zero loss
    assert torch.allclose(B.protonet_nll(2, 2)(z, 1 - y), nll)  # relabelling every point changes nothing
    assert float(B.protonet_nll(2, 2)(z, torch.tensor([[0, 1, 1, 0]]))) > 50  # mislabelled queries: large loss
    with pytest.raises(ValueError, match="n_proto"):
        B.protonet_nll(3, 2)


def test_fewshot_data_is_standardised_on_the_training_classes():
    split = B.fewshot_data(FS)
    train = torch.isin(split.y, torch.tensor(split.train_classes))
    assert abs(float(split.x[train].mean())) < 1e-4 and abs(float(split.x[train].std()) - 1) < 1e-4


@pytest.mark.parametrize("method", B.FEWSHOT_METHODS)
def test_fewshot_methods_train_and_predict(method):
    split = B.fewshot_data(FS)
    model, h = B.train_fewshot(FS, method, split, 0)
    assert len(h["loss"]) == 3 and all(torch.isfinite(torch.tensor(h["loss"])))
    e = episodes(split.x, split.y, split.test_classes, 3, 1, 2, 4, generator=torch.Generator().manual_seed(0))
    probs = B.fewshot_probs(FS, method, model, e, torch.Generator().manual_seed(0))
    assert probs.shape == (4, 6, 3) and torch.allclose(probs.sum(-1), torch.ones(4, 6))
    scores = B.fewshot_scores(probs, e)
    assert set(scores) == {"accuracy", "accuracy_se", "ece"}


def test_niw_meta_with_a_pinned_prior_predicts_like_protonet_at_m0():
    # gamma0 = 1e12: m* = m0 and 1/sqrt(gamma*) ~ 1e-6, so NIW-Meta (at m* and with draws from q*)
    # must give ProtoNet's probabilities with the embedding at m0 (review N6). 16 channels: with
    # FS's 8 (one channel per GroupNorm group) the last block sees 1x1 maps and outputs a constant
    cfg = dataclasses.replace(FS, channels=16)
    split = B.fewshot_data(cfg)
    net = B._fewshot_net(cfg, split, 0, False, None)
    niw = M.NIWMeta(net, B.protonet_nll(cfg.n_way, cfg.n_way * cfg.k_shot), gamma0=1e12, n0=cfg.n0,
                    sgld_steps=cfg.sgld_steps, step_size=cfg.step_size, a_max=cfg.a_max)  # fmt: skip
    e = episodes(split.x, split.y, split.test_classes, 3, 1, 2, 4, generator=torch.Generator().manual_seed(0))
    proto = B.fewshot_probs(cfg, "ProtoNet", (net, niw.m0.detach()), e)
    assert not torch.allclose(proto, torch.full_like(proto, 1 / 3), atol=1e-2)  # a non-trivial prediction
    for n in (0, 2):
        probs = B.fewshot_probs(cfg, "NIW-Meta", niw, e, torch.Generator().manual_seed(0), n_samples=n)
        assert torch.allclose(probs, proto, atol=1e-5 if n == 0 else 1e-3), n  # draws: sd ~1e-6 per weight


def test_fewshot_scores_and_bad_input():
    e = episodes(torch.zeros(12, 1), torch.arange(3).repeat(4), range(3), 3, 1, 2, 2,
                 generator=torch.Generator().manual_seed(0))  # fmt: skip
    perfect = torch.nn.functional.one_hot(e.y_query, 3).float()
    assert B.fewshot_scores(perfect, e) == {"accuracy": 1.0, "accuracy_se": 0.0, "ece": 0.0}
    wrong = torch.nn.functional.one_hot((e.y_query + 1) % 3, 3).float()
    s = B.fewshot_scores(wrong, e)
    assert s["accuracy"] == 0.0 and s["ece"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="few-shot method"):
        B.train_fewshot(FS, "Reptile", B.fewshot_data(FS), 0)
