"""SineLine tasks and N-way K-shot episodes of varbook.data.fewshot."""

from __future__ import annotations

import math

import pytest
import torch

from varbook.data.fewshot import class_split, episodes, sineline


def test_sineline_shapes_ranges_and_noise():
    t = sineline(4000, 5, 10, noise=0.3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert t.x_support.shape == (4000, 5, 1) and t.y_query.shape == (4000, 10, 1) and len(t) == 4000
    assert t.x_all.shape == (4000, 15, 1) and torch.equal(t.x_all[:, :5], t.x_support)
    assert float(t.x_all.min()) >= -5 and float(t.x_all.max()) <= 5
    sine, line = t.coef[t.kind == 0], t.coef[t.kind == 1]
    assert 0.1 <= float(sine[:, 0].min()) and float(sine[:, 0].max()) <= 5
    assert 0 <= float(sine[:, 1].min()) and float(sine[:, 1].max()) <= math.pi
    assert float(line.abs().max()) <= 3
    share = float((t.kind == 0).double().mean())
    assert abs(share - 0.5) < 4 * math.sqrt(0.25 / 4000)
    resid = (t.y_all - t.curve(t.x_all)).flatten()
    n = len(resid)
    assert abs(float(resid.var()) - 0.09) < 4 * 0.09 * math.sqrt(2 / (n - 1))
    # the curve is what it says: a sine task's curve at x = phi is 0, a line's at 0 is b
    x0 = torch.where(t.kind[:, None, None] == 0, t.coef[:, None, None, 1], torch.zeros(1, 1, 1, dtype=torch.float64))
    at = t.curve(x0)[:, 0, 0]
    assert torch.allclose(at[t.kind == 0], torch.zeros(1, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(at[t.kind == 1], line[:, 1])


def test_sineline_is_deterministic_for_a_generator():
    a = sineline(3, generator=torch.Generator().manual_seed(7))
    b = sineline(3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.y_support, b.y_support) and torch.equal(a.coef, b.coef)
    with pytest.raises(ValueError, match="n_tasks"):
        sineline(0)
    with pytest.raises(ValueError, match="p_sine"):
        sineline(2, p_sine=1.5)


def test_episodes_have_the_right_classes_and_shots():
    # each example's feature is its own index, so every drawn example can be traced back
    y = torch.arange(10).repeat_interleave(torch.arange(10) + 8)  # class c has c + 8 examples
    x = torch.arange(len(y), dtype=torch.float32)[:, None]
    ep = episodes(x, y, classes=(6, 7, 8, 9), n_way=3, k_shot=2, n_query=4, n_episodes=500,
                  generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert ep.x_support.shape == (500, 6, 1) and ep.x_query.shape == (500, 12, 1)
    assert ep.y_support.tolist()[0] == [0, 0, 1, 1, 2, 2] and ep.y_query[0].bincount().tolist() == [4, 4, 4]
    sup, qry = ep.x_support[..., 0].long(), ep.x_query[..., 0].long()
    # every example belongs to the class its local label names
    assert torch.equal(y[sup], ep.classes.gather(1, ep.y_support))
    assert torch.equal(y[qry], ep.classes.gather(1, ep.y_query))
    for e in range(500):
        assert len(set(ep.classes[e].tolist())) == 3 and set(ep.classes[e].tolist()) <= {6, 7, 8, 9}
        idx = torch.cat([sup[e], qry[e]])
        assert len(idx.unique()) == 18  # support and query are disjoint, no repeats
    # every 3-class set of the 4 held-out classes appears
    assert len({tuple(sorted(c)) for c in ep.classes.tolist()}) == 4


def test_episodes_refuse_impossible_requests():
    y = torch.arange(4).repeat_interleave(3)
    x = torch.zeros(len(y), 2)
    with pytest.raises(ValueError, match="at least 5 classes"):
        episodes(x, y, range(4), 5, 1, 1, 2)
    with pytest.raises(ValueError, match="every class needs 4"):
        episodes(x, y, range(4), 2, 2, 2, 2)
    with pytest.raises(ValueError, match="disagree"):
        episodes(x, y[:-1], range(4), 2, 1, 1, 2)
    with pytest.raises(ValueError, match="duplicate classes"):
        episodes(x, y, (1, 1, 2), 2, 1, 1, 2)  # class 1 would appear under two labels


def test_class_split_of_digits():
    s = class_split("digits")
    assert s.x.shape == (1797, 1, 8, 8) and s.train_classes == (0, 1, 2, 3, 4, 5) and s.test_classes == (6, 7, 8, 9)
    assert float(s.x.max()) <= 1 and set(s.y.tolist()) == set(range(10))
    with pytest.raises(ValueError, match="unknown data set"):
        class_split("cifar")
    with pytest.raises(ValueError, match="proper subset"):
        class_split("digits", test_classes=range(10))
