import pytest
import torch

from varbook.estimators import (
    ConstantBaseline,
    EMABaseline,
    PerUnitOptimalBaseline,
    QuadraticToy,
    exact_gradient,
    exact_optimal_baselines,
    exact_unnormalised_baseline,
    group_baseline_samples,
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


def test_exact_optimal_baselines_match_the_enumerated_optimum():
    g = torch.Generator().manual_seed(1)
    toy = QuadraticToy(4, offset=2.0, generator=g)
    a = torch.randn(4, generator=g, dtype=torch.float64)
    per_unit, scalar = exact_optimal_baselines(a, toy)
    s = enumerate_binary(4)
    w = bernoulli_log_prob(s, a).sum(-1).exp()
    assert torch.equal(per_unit, optimal_baseline(s - torch.sigmoid(a), toy(s), w))
    assert per_unit.shape == (4,) and scalar.dim() == 0
    # each per-unit value minimises its coordinate's exact variance; the scalar, the trace
    v_unit, v_scalar = reinforce_moments(a, toy, per_unit)[1], reinforce_moments(a, toy, scalar)[1]
    assert (v_unit <= v_scalar + 1e-12).all() and v_scalar.sum() < reinforce_moments(a, toy, 0.0)[1].sum()
    for delta in (-0.05, 0.05):
        assert reinforce_moments(a, toy, scalar + delta)[1].sum() > v_scalar.sum()


def test_unnormalised_baseline_is_the_optimum_times_p_one_minus_p_and_worse():
    g = torch.Generator().manual_seed(1)
    toy = QuadraticToy(5, offset=5.0, generator=g)
    a = torch.randn(5, generator=g, dtype=torch.float64)
    per_unit, scalar = exact_optimal_baselines(a, toy)
    wrong = exact_unnormalised_baseline(a, toy)
    p = torch.sigmoid(a)
    assert torch.allclose(wrong, per_unit * p * (1 - p))
    var = [float(reinforce_moments(a, toy, b)[1].sum()) for b in (per_unit, scalar, wrong, 0.0)]
    assert var[0] <= var[1] < var[2] < var[3]  # the control breaks the ordering optimal <= scalar
    assert var[3] / var[2] < 2  # and leaves most of the variance


@pytest.mark.parametrize("include_self", [False, True])
def test_group_baseline_samples_bias(include_self):
    g = torch.Generator().manual_seed(2)
    toy = QuadraticToy(4, offset=2.0, generator=g)
    a = torch.randn(4, generator=g, dtype=torch.float64)
    exact = exact_gradient(a, toy)
    samples = group_baseline_samples(a, toy, 100_000, group=4, include_self=include_self, generator=g)
    assert samples.shape == (100_000, 4)
    mean, se = samples.mean(0), samples.std(0) / 100_000**0.5
    expected = 0.75 * exact if include_self else exact  # (K - 1) / K times the gradient with the sample included
    assert ((mean - expected).abs() / se).max() < 4.5
    if include_self:
        assert ((mean - exact).abs() / se).max() > 10
    with pytest.raises(ValueError):
        group_baseline_samples(a, toy, 10, group=1)
