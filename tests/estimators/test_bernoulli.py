import itertools

import pytest
import torch

from varbook.estimators import (
    BinaryStack,
    BinaryStochastic,
    QuadraticToy,
    bonferroni_z,
    concrete_samples,
    exact_gradient,
    exact_sts_gradient,
    gradient_samples,
    gradient_stats,
    reinforce_moments,
    sample_estimators,
    st_depth_cosines,
)
from varbook.estimators.bernoulli import (
    bernoulli_log_prob,
    enumerate_binary,
    exact_expectation,
    fire_probability,
    noisy_rectifier,
    stochastic_times_smooth,
    straight_through,
)

D = torch.float64


@pytest.fixture
def problem():
    g = torch.Generator().manual_seed(0)
    toy = QuadraticToy(6, m=4, offset=3.0, generator=g)
    a = torch.randn(6, generator=g, dtype=D)
    return toy, a, g


def test_enumerate_binary():
    s = enumerate_binary(3)
    assert s.shape == (8, 3) and s.dtype == D
    assert {tuple(r) for r in s.int().tolist()} == set(itertools.product([0, 1], repeat=3))
    with pytest.raises(ValueError):
        enumerate_binary(0)


def test_log_prob_and_its_score():
    a = torch.randn(5, dtype=D, requires_grad=True)
    h = torch.tensor([0, 1, 1, 0, 1], dtype=D)
    lp = bernoulli_log_prob(h, a)
    p = torch.sigmoid(a)
    assert torch.allclose(lp, torch.where(h > 0, p.log(), (1 - p).log()))
    (g,) = torch.autograd.grad(lp.sum(), a)
    assert torch.allclose(g, h - p)


def test_exact_gradient_matches_finite_differences(problem):
    toy, a, _ = problem
    g = exact_gradient(a, toy)
    eps = 1e-6
    for i in range(len(a)):
        e = torch.zeros_like(a)
        e[i] = eps
        fd = (exact_expectation(a + e, toy) - exact_expectation(a - e, toy)) / (2 * eps)
        assert abs(float(fd - g[i])) < 1e-8


@pytest.mark.parametrize("baseline", [None, 3.0])
def test_reinforce_is_unbiased(problem, baseline):
    toy, a, g = problem
    stats = gradient_stats(gradient_samples("reinforce", a, toy, 20000, g, baseline=baseline), exact_gradient(a, toy))
    assert stats.max_abs_z < bonferroni_z(len(a), alpha=0.001)


@pytest.mark.parametrize("variant", ["st_id", "st_sigmoid"])
def test_straight_through_is_biased(problem, variant):
    toy, a, g = problem
    stats = gradient_stats(gradient_samples(variant, a, toy, 20000, g), exact_gradient(a, toy))
    assert stats.max_abs_z > 10
    assert stats.cosine > 0


def test_reinforce_moments_are_exact(problem):
    toy, a, g = problem
    mean, var = reinforce_moments(a, toy, 2.5)
    assert torch.allclose(mean, exact_gradient(a, toy), atol=1e-12)
    samples = gradient_samples("reinforce", a, toy, 40000, g, baseline=2.5)
    # the sample variance of n draws has relative s.e. about sqrt(2/n) for near-Gaussian data; allow 6 of those
    assert torch.allclose(samples.var(0), var, rtol=6 * (2 / 40000) ** 0.5 * 3)


def test_straight_through_gradients():
    a = torch.randn(1000, dtype=D, requires_grad=True)
    h = straight_through(a, "st_id")
    assert set(h.detach().unique().tolist()) <= {0.0, 1.0}
    (g,) = torch.autograd.grad((h * 2.0).sum(), a)
    assert torch.allclose(g, torch.full_like(a, 2.0))
    h = straight_through(a, "st_sigmoid")
    (g,) = torch.autograd.grad((h * 2.0).sum(), a)
    p = torch.sigmoid(a)
    assert torch.allclose(g, 2 * p * (1 - p))
    with pytest.raises(ValueError):
        straight_through(a, "st_tanh")


def test_sts_mean_and_gradient():
    g = torch.Generator().manual_seed(1)
    a = torch.tensor([-2.0, 0.0, 1.5], dtype=D).expand(200000, 3).clone().requires_grad_(True)
    h = stochastic_times_smooth(a, g)
    p = torch.sigmoid(a[0]).detach()
    se = (h.detach().var(0) / h.shape[0]).sqrt()
    assert ((h.detach().mean(0) - p).abs() < 4 * se).all()
    assert torch.allclose((h.detach() == 0).double().mean(0), 1 - p.sqrt(), atol=5e-3)
    (grad,) = torch.autograd.grad(h.sum(), a)
    b = (h.detach() > 0).double()
    sig = torch.sigmoid(a.detach())
    assert torch.allclose(grad, b * sig * (1 - sig) / (2 * sig.sqrt()))


def test_noisy_rectifier_fire_probability():
    g = torch.Generator().manual_seed(2)
    a = torch.tensor([-1.0, 0.0, 2.0], dtype=D).expand(100000, 3)
    h = noisy_rectifier(a, 0.5, g)
    assert (h >= 0).all()
    assert torch.allclose((h > 0).double().mean(0), fire_probability(a[0], "noisy_relu", 0.5), atol=6e-3)
    with pytest.raises(ValueError):
        fire_probability(a, "gumbel")


def test_layer_modes_and_reinforce_surrogate():
    layer = BinaryStochastic("reinforce")
    with pytest.raises(RuntimeError, match="training mode"):
        layer.reinforce_surrogate(torch.zeros(2))
    a = torch.randn(4, 3, dtype=D, requires_grad=True)
    h = layer(a)
    loss = torch.arange(4, dtype=D)
    b = torch.tensor([0.5, 1.0, 1.5], dtype=D)
    (g,) = torch.autograd.grad(layer.reinforce_surrogate(loss, b), a)
    assert torch.allclose(g, (h - torch.sigmoid(a)).detach() * (loss[:, None] - b) / 4)
    layer.eval()
    assert torch.equal(layer(torch.tensor([-1.0, 1.0])), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="unknown estimator"):
        BinaryStochastic("magic")
    with pytest.raises(RuntimeError, match="needs estimator='reinforce'"):
        BinaryStochastic("sts").reinforce_surrogate(loss)


def test_exact_sts_gradient_matches_finite_differences(problem):
    toy, a, _ = problem

    def objective(x):
        sp = torch.sigmoid(x).sqrt()
        s = enumerate_binary(len(x))
        return (torch.where(s > 0, sp, 1 - sp).prod(-1) * toy(s * sp)).sum()

    g = exact_sts_gradient(a, toy)
    e = torch.zeros_like(a)
    e[0] = 1e-6
    assert abs(float((objective(a + e) - objective(a - e)) / 2e-6 - g[0])) < 1e-7


def test_binary_stack_exact_loss_against_brute_force():
    g = torch.Generator().manual_seed(3)
    stack = BinaryStack(2, 3, QuadraticToy(2, m=2, generator=g), generator=g)
    s = enumerate_binary(2)
    total = torch.zeros((), dtype=D)
    for h1, h2, h3 in itertools.product(s, s, s):
        p = bernoulli_log_prob(h1, stack.theta).sum().exp()
        p = p * bernoulli_log_prob(h2, stack.W[0] @ h1 + stack.c[0]).sum().exp()
        p = p * bernoulli_log_prob(h3, stack.W[1] @ h2 + stack.c[1]).sum().exp()
        total = total + p * stack.loss_fn(h3[None])[0]
    assert torch.allclose(stack.exact_loss(), total)
    est = stack.gradient_samples(100, "st_sigmoid", g)
    assert est.shape == (100, 2) and stack.exact_gradient().shape == (2,)
    with pytest.raises(ValueError):
        stack.gradient_samples(10, "reinforce", g)


def test_sample_estimators_draws_in_order_like_separate_calls(problem):
    toy, a, _ = problem
    specs = {"plain": ("reinforce", None), "with b": ("reinforce", 3.0), "ST": ("st_sigmoid", None)}
    together = sample_estimators(specs, a, toy, 50, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    for label, (name, baseline) in specs.items():
        assert torch.equal(together[label], gradient_samples(name, a, toy, 50, g, baseline=baseline))
    assert list(together) == list(specs)


@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
def test_concrete_samples_match_torch_relaxed_bernoulli(problem, tau):
    toy, a, _ = problem
    torch.manual_seed(3)
    logits = a.expand(40, -1).clone().requires_grad_(True)
    h = torch.distributions.RelaxedBernoulli(torch.tensor(tau, dtype=D), logits=logits).rsample()
    (expected,) = torch.autograd.grad(toy(h).sum(), logits)
    torch.manual_seed(3)
    assert torch.equal(concrete_samples(a, toy, tau, 40), expected)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(concrete_samples(a, toy, tau, 40, g1), concrete_samples(a, toy, tau, 40, g2))


def test_concrete_bias_vanishes_at_low_temperature(problem):
    toy, a, g = problem
    exact = exact_gradient(a, toy)
    bias = [float(gradient_stats(concrete_samples(a, toy, tau, 20000, g), exact).bias.norm()) for tau in (0.05, 2.0)]
    assert bias[0] < 0.5 * bias[1]


def test_st_depth_cosines_shapes_and_reproducibility():
    out = st_depth_cosines([1, 2], n_stacks=3, seed=0, n_samples=200)
    assert list(out) == ["st_sigmoid", "st_id"] and all(len(v) == 2 for v in out.values())
    assert all(-1 <= c <= 1 for v in out.values() for c in v)
    assert st_depth_cosines([1, 2], n_stacks=3, seed=0, n_samples=200) == out
    # one stack by hand: depth 2, the generator seeded with 1000 * seed + depth
    g = torch.Generator().manual_seed(2)
    stack = BinaryStack(4, 2, QuadraticToy(4, m=4, generator=g), generator=g)
    cos = gradient_stats(stack.gradient_samples(200, "st_id", g), stack.exact_gradient()).cosine
    assert st_depth_cosines([2], n_stacks=1, seed=0, estimators=("st_id",), n_samples=200)["st_id"] == [
        pytest.approx(cos, abs=1e-6)
    ]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_binary_stack_expected_estimate_is_the_monte_carlo_mean(depth):
    g = torch.Generator().manual_seed(5)
    stack = BinaryStack(3, depth, QuadraticToy(3, m=3, generator=g), generator=g)
    assert torch.allclose(stack.expected_estimate("reinforce"), stack.exact_gradient(), atol=1e-12)
    for variant in ("st_id", "st_sigmoid"):
        samples = stack.gradient_samples(100_000, variant, g)
        z = (samples.mean(0) - stack.expected_estimate(variant)) / (samples.std(0) / 100_000**0.5)
        assert z.abs().max() < 4.5
    with pytest.raises(ValueError):
        stack.expected_estimate("sts")


def test_st_depth_cosines_exact_expectation():
    out = st_depth_cosines([1, 2, 3], n_stacks=20, seed=0, estimators=("st_id", "reinforce"), n_samples=None)
    assert out["reinforce"] == [pytest.approx(1.0, abs=1e-6)] * 3  # the unbiased reference
    assert all(c < 0.999 for c in out["st_id"])  # straight-through is biased
    g = torch.Generator().manual_seed(2)
    stack = BinaryStack(4, 2, QuadraticToy(4, m=4, generator=g), generator=g)
    cos = float(torch.nn.functional.cosine_similarity(stack.expected_estimate("st_id"), stack.exact_gradient(), dim=0))
    assert st_depth_cosines([2], 1, 0, ("st_id",), n_samples=None)["st_id"] == [pytest.approx(cos, abs=1e-6)]


def test_depth_cosines_per_stack_and_their_mean():
    from varbook.estimators import depth_cosines

    cos = depth_cosines([1, 2, 3], n_stacks=6, seed=1, estimators=("st_id", "reinforce"))
    assert set(cos) == {"st_id", "reinforce"} and cos["st_id"].shape == (3, 6)
    assert torch.allclose(cos["reinforce"], torch.ones(3, 6, dtype=torch.float64), atol=1e-12)  # unbiased
    means = st_depth_cosines([1, 2, 3], 6, 1, ("st_id",), n_samples=None)["st_id"]
    assert means == pytest.approx(cos["st_id"].mean(1).tolist(), abs=1e-12)
    # stack 0 at depth 2 by hand: the generator seeded with 1000 * seed + depth
    g = torch.Generator().manual_seed(1002)
    stack = BinaryStack(4, 2, QuadraticToy(4, m=4, generator=g), generator=g)
    by_hand = torch.nn.functional.cosine_similarity(stack.expected_estimate("st_id"), stack.exact_gradient(), dim=0)
    assert float(cos["st_id"][1, 0]) == pytest.approx(float(by_hand), abs=1e-12)


def test_st_sigmoid_replaces_the_finite_difference_by_the_derivative_at_p():
    """Eq. st-finite-difference on the quadratic toy: the exact gradient is sigma'(a) times dL/dh at h = p with
    coordinate i at 1/2; the mean of ST-sigma' is sigma'(a) times dL/dh at h = p."""
    g = torch.Generator().manual_seed(4)
    toy = QuadraticToy(6, m=5, offset=1.0, generator=g)
    a = torch.randn(6, generator=g, dtype=D)
    p, slope = torch.sigmoid(a), torch.sigmoid(a) * torch.sigmoid(-a)

    def dL(h):
        h = h.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(toy(h), h)
        return grad

    mid = torch.stack([dL(torch.where(torch.arange(6) == i, 0.5, p))[i] for i in range(6)])
    assert torch.allclose(exact_gradient(a, toy), slope * mid, atol=1e-12)
    samples = gradient_samples("st_sigmoid", a, toy, 100_000, g)
    z = (samples.mean(0) - slope * dL(p)) / (samples.std(0) / 100_000**0.5)
    assert z.abs().max() < bonferroni_z(6, alpha=0.001)
