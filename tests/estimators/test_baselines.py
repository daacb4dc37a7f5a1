import pytest
import torch

from varbook.estimators import (
    ConstantBaseline,
    EMABaseline,
    PerUnitOptimalBaseline,
    QuadraticToy,
    leave_one_out,
    optimal_baseline,
    reinforce_moments,
)
from varbook.estimators.bernoulli import bernoulli_log_prob, enumerate_binary


def test_optimal_baseline_minimises_exact_variance():
    g = torch.Generator().manual_seed(0)
    toy = QuadraticToy(5, offset=4.0, generator=g)
    a = torch.randn(5, generator=g, dtype=torch.float64)
    s = enumerate_binary(5)
    w = bernoulli_log_prob(s, a).sum(-1).exp()
    b = optimal_baseline(s - torch.sigmoid(a), toy(s), w)
    _, v_opt = reinforce_moments(a, toy, b)
    for delta in (-0.1, 0.1):
        for i in range(5):
            bb = b.clone()
            bb[i] += delta
            _, v = reinforce_moments(a, toy, bb)
            assert v[i] > v_opt[i] and torch.allclose(v[torch.arange(5) != i], v_opt[torch.arange(5) != i])
    scalar = optimal_baseline(s - torch.sigmoid(a), toy(s), w, per_unit=False)
    for delta in (-0.1, 0.1):
        assert reinforce_moments(a, toy, scalar + delta)[1].sum() > reinforce_moments(a, toy, scalar)[1].sum()


def test_per_unit_ema_baseline_tracks_the_ratio():
    base = PerUnitOptimalBaseline(momentum=0.5)
    assert base.value() == 0.0
    score = torch.tensor([[1.0, 0.5], [-1.0, 0.5]])
    loss = torch.tensor([2.0, 4.0])
    for _ in range(30):
        base.update(score, loss)
    expected = ((score**2) * loss[:, None]).mean(0) / (score**2).mean(0)
    assert torch.allclose(base.value(), expected)
    with pytest.raises(ValueError):
        PerUnitOptimalBaseline(momentum=1.0)


def test_scalar_baselines():
    ema = EMABaseline(0.5)
    ema.update(None, torch.tensor([2.0, 2.0]))
    ema.update(None, torch.tensor([4.0]))
    assert float(ema.value()) == pytest.approx(3.0)
    c = ConstantBaseline(1.5)
    c.update(None, torch.ones(2))
    assert c.value() == 1.5


def test_leave_one_out():
    loss = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]])
    out = leave_one_out(loss, dim=0)
    assert torch.allclose(out[:, 0], torch.tensor([4.0, 3.0, 2.0]))
    with pytest.raises(ValueError):
        leave_one_out(torch.ones(1, 3))
