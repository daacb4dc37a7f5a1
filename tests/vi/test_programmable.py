import itertools
import math

import pytest
import torch
from torch import distributions as D

from varbook.estimators import ConstantBaseline, EMABaseline, QuadraticToy, bonferroni_z, exact_gradient, gradient_stats
from varbook.estimators.bernoulli import exact_expectation
from varbook.runtime import History, NonFiniteLossError
from varbook.vi import Strategy, estimate, iwelbo, maximise, reinforce
from varbook.vi.benchmarks import MIXED_THETA, gradient_draws, mixed_exact, mixed_program

F64 = torch.float64


@pytest.fixture
def toy():
    g = torch.Generator().manual_seed(0)
    loss = QuadraticToy(8, m=5, offset=4.0, generator=g)
    a = torch.randn(8, generator=g, dtype=F64)
    return loss, a


def toy_program(loss, strategy):
    def program(t, logits):
        h = t.sample("h", D.Independent(D.Bernoulli(logits=logits), 1), strategy)
        return -loss(h)

    return program


def samples(loss, a, strategy, n):
    logits = a.expand(n, -1).clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(estimate(toy_program(loss, strategy), logits).sum(), logits)
    return grad


@pytest.mark.parametrize("strategy", ["reinforce", "mvd", reinforce(-4.5), reinforce(ConstantBaseline(-4.0))])
def test_each_strategy_is_unbiased_against_enumeration(toy, strategy):
    loss, a = toy
    torch.manual_seed(1)
    st = gradient_stats(samples(loss, a, strategy, 20000), -exact_gradient(a, loss))
    assert st.max_abs_z < bonferroni_z(8, alpha=0.001)


def test_enum_is_exact_and_has_no_variance(toy):
    loss, a = toy
    g = samples(loss, a, "enum", 3)
    assert torch.allclose(g, (-exact_gradient(a, loss)).expand(3, -1), atol=1e-12)
    value = estimate(toy_program(loss, "enum"), a)
    assert torch.allclose(value, -exact_expectation(a, loss))


def test_baselines_reduce_reinforce_variance(toy):
    loss, a = toy
    torch.manual_seed(2)
    plain = gradient_stats(samples(loss, a, "reinforce", 4000), -exact_gradient(a, loss)).trace_var
    based = gradient_stats(samples(loss, a, reinforce(-4.5), 4000), -exact_gradient(a, loss)).trace_var
    mvd = gradient_stats(samples(loss, a, "mvd", 4000), -exact_gradient(a, loss)).trace_var
    assert plain > based > mvd


def test_ema_baseline_is_updated_with_the_estimate():
    base = EMABaseline(0.5)
    program = toy_program(lambda h: h.sum(-1), reinforce(base))
    estimate(program, torch.zeros(4, 3, dtype=F64))
    assert float(base.value()) != 0.0


def test_mvd_uses_fresh_downstream_randomness():
    """v ~ Bern(p), u ~ N(0, 1) downstream, l = (u + 2v)^2: the flipped branch must draw its own u."""
    seen = []
    p = torch.tensor(0.3, dtype=F64, requires_grad=True)

    def program(t, p):
        v = t.sample("v", D.Bernoulli(probs=p.expand(50000)), "mvd")
        u = t.sample("u", D.Normal(torch.zeros(50000, dtype=F64), 1.0), "reparam")
        seen.append(u.detach().clone())
        return (u + 2 * v) ** 2

    torch.manual_seed(3)
    (grad,) = torch.autograd.grad(estimate(program, p).sum(), p)
    assert len(seen) == 2 and not torch.allclose(seen[0], seen[1])  # main run, then the flipped run
    # E[l] = p E(u+2)^2 + (1-p) E u^2 = 5p + (1-p), so dE/dp = 4 for each of the 50000 copies
    per_copy = grad / 50000
    assert abs(float(per_copy) - 4.0) < 0.1


def test_reparam_through_upstream_choice_is_kept_by_enum():
    """A reparameterised choice before an enumerated one: its pathwise gradient flows through every branch."""
    mu = torch.tensor(0.7, dtype=F64, requires_grad=True)

    def program(t, mu):
        z = t.sample("z", D.Normal(mu.expand(20000), 1.0), "reparam")
        b = t.sample("b", D.Bernoulli(probs=torch.full((20000,), 0.25, dtype=F64)), "enum")
        return z * (1 + b)  # E = mu (1 + 0.25)

    torch.manual_seed(4)
    (grad,) = torch.autograd.grad(estimate(program, mu).mean(), mu)
    assert abs(float(grad) - 1.25) < 1e-9


def test_categorical_enumeration():
    logits = torch.tensor([0.2, -0.3, 1.0], dtype=F64, requires_grad=True)
    values = torch.tensor([1.0, 4.0, -2.0], dtype=F64)

    def program(t, logits):
        k = t.sample("k", D.Categorical(logits=logits), "enum")
        return values[k]

    out = estimate(program, logits)
    probs = torch.softmax(logits, 0)
    assert torch.allclose(out, (probs * values).sum())
    (g,) = torch.autograd.grad(out, logits)
    (g_exact,) = torch.autograd.grad((torch.softmax(logits, 0) * values).sum(), logits)
    assert torch.allclose(g, g_exact)


def test_bad_programs_get_clear_errors():
    with pytest.raises(ValueError, match="unknown gradient strategy"):
        Strategy("magic")
    bern = D.Bernoulli(probs=torch.tensor(0.5))
    with pytest.raises(ValueError, match="cannot be reparameterised"):
        estimate(lambda t: t.sample("b", bern, "reparam"))
    with pytest.raises(ValueError, match="twice"):
        estimate(lambda t: t.sample("b", bern, "reinforce") + t.sample("b", bern, "reinforce"))
    with pytest.raises(TypeError, match="must return a tensor"):
        estimate(lambda t: 1.0)
    with pytest.raises(TypeError, match="torch Distribution"):
        estimate(lambda t: t.sample("x", 3.0))
    normal = D.Normal(torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="'enum' needs a Bernoulli or Categorical"):
        estimate(lambda t: t.sample("x", normal, "enum"))
    with pytest.raises(ValueError, match="'mvd' is implemented for Bernoulli"):
        estimate(lambda t: t.sample("x", normal, "mvd"))
    with pytest.raises(ValueError, match="does not end with the program value's shape"):
        estimate(lambda t: t.sample("b", D.Bernoulli(probs=torch.full((4,), 0.5)), "reinforce").sum().expand(3))


def test_maximise_stops_on_nan():
    mu = torch.nn.Parameter(torch.tensor([0.0]))

    def program(t):
        z = t.sample("z", D.Normal(mu, 1.0), "reparam")
        return z * float("nan")

    with pytest.raises(NonFiniteLossError, match="objective estimate"):
        maximise(program, [mu], 3)
    with pytest.raises(ValueError, match="unknown optimizer"):
        maximise(program, [mu], 1, optimizer="rmsprop")


def test_maximise_learns_a_gaussian_mean():
    mu = torch.nn.Parameter(torch.tensor([0.0], dtype=F64))

    def program(t):
        z = t.sample("z", D.Normal(mu.expand(64), 1.0), "reparam")
        return -((z - 3.0) ** 2)

    torch.manual_seed(5)
    history = maximise(program, [mu], 300, lr=0.05, record_every=50)
    assert isinstance(history, History) and history["step"] == [0, 50, 100, 150, 200, 250]
    assert abs(float(mu.detach()) - 3.0) < 0.1
    assert math.isfinite(history.last("objective")) and history["objective"][-1] > history["objective"][0]


def iwelbo_exact(a, log_joint, K):
    """E log (1/K) sum_k exp w(z_k) for z_k ~ Bern(sigmoid(a)) iid, by summing over all 2^K joint configurations."""
    q = D.Independent(D.Bernoulli(logits=a), 1)
    total = torch.zeros((), dtype=F64)
    for config in itertools.product([0.0, 1.0], repeat=K):
        z = torch.tensor(config, dtype=F64)[:, None]
        w = log_joint(z) - q.log_prob(z)
        total = total + q.log_prob(z).sum().exp() * (torch.logsumexp(w, 0) - math.log(K))
    return total


@pytest.mark.parametrize("K", [1, 2, 3])
def test_enum_over_the_particles_of_one_estimate_enumerates_their_product(K):
    """IWELBO(K) with an enumerated Bernoulli: the K particles of one estimate take all 2^K joint values.

    Giving every particle the same value c, weighted by q(c)^K, is the mistake this test catches
    (the enumeration did that before): for K = 2 it is 0.34 nats away from the exact value here.
    """
    a = torch.tensor([0.3], dtype=F64, requires_grad=True)
    log_joint = lambda z: (1.5 * z - 2.0 * (1 - z)).sum(-1) - 0.7  # noqa: E731
    guide = lambda: D.Independent(D.Bernoulli(logits=a), 1)  # noqa: E731
    value = estimate(iwelbo(log_joint, guide, K, strategy="enum"))
    exact = iwelbo_exact(a, log_joint, K)
    assert value.shape == (1,)
    assert torch.allclose(value, exact.reshape(1), atol=1e-12)
    (g,) = torch.autograd.grad(value.sum(), a)
    (g_exact,) = torch.autograd.grad(exact, a)
    assert torch.allclose(g, g_exact, atol=1e-12)
    if K > 1:
        q = D.Independent(D.Bernoulli(logits=a.detach()), 1)
        same = [torch.full((K, 1), c, dtype=F64) for c in (0.0, 1.0)]  # every particle equal
        wrong = sum(q.log_prob(z).sum().exp() * (log_joint(z[0]) - q.log_prob(z[0])) for z in same)
        assert abs(float(wrong) - float(exact.detach())) > 0.3


def test_enum_keeps_independent_estimates_apart():
    """Estimates along the value's dimensions enumerate in parallel: 3 estimates of IWELBO(2) equal 3 exact values."""
    a = torch.tensor([[0.3], [-1.0], [2.0]], dtype=F64)
    log_joint = lambda z: (1.5 * z - 2.0 * (1 - z)).sum(-1)  # noqa: E731
    guide = lambda: D.Independent(D.Bernoulli(logits=a), 1)  # noqa: E731
    value = estimate(iwelbo(log_joint, guide, 2, strategy="enum"))  # value (particles=1, 3)
    exact = torch.stack([iwelbo_exact(a[i], log_joint, 2) for i in range(3)])
    assert torch.allclose(value.reshape(3), exact, atol=1e-12)


def test_enum_refuses_an_enumeration_it_cannot_afford():
    guide = lambda: D.Independent(D.Bernoulli(logits=torch.zeros(3)), 1)  # noqa: E731
    with pytest.raises(ValueError, match="needs 2\\^18 runs"):
        estimate(iwelbo(lambda z: z.sum(-1), guide, 6, strategy="enum"))  # 6 particles x 3 coordinates


@pytest.mark.parametrize("strategy_b3, unbiased", [(reinforce(0.8), True), ("reinforce", True), ("none", False)])
def test_mixed_strategies_over_dependent_sites_are_unbiased(strategy_b3, unbiased):
    """The paper's central claim: any mix of strategies over dependent choices gives an unbiased gradient.

    :func:`~varbook.vi.benchmarks.mixed_program` chains reparam -> enum -> mvd -> REINFORCE -> enum;
    20000 estimates against quadrature (family-wise alpha = 1e-3). The control (``"none"`` at b3: the
    score term dropped, as a hand-written estimator might) must be caught.
    """
    theta = torch.tensor(MIXED_THETA, dtype=F64, requires_grad=True)
    (exact,) = torch.autograd.grad(mixed_exact(theta), theta)
    n = 20000
    program = mixed_program({"b3": strategy_b3})
    torch.manual_seed(6)
    draws, _ = gradient_draws(program, theta.detach(), n)
    st = gradient_stats(draws, exact)
    with torch.no_grad():
        value = estimate(program, theta.detach().expand(n, -1))
    assert abs(float(value.mean()) - float(mixed_exact(theta.detach()))) < 5 * float(value.std()) / math.sqrt(n)
    if unbiased:
        assert st.max_abs_z < bonferroni_z(6, alpha=0.001)
    else:
        assert st.max_abs_z > 10


def test_flipped_mvd_branches_run_once_so_chained_mvd_choices_cost_linear_time():
    """Three chained ``mvd`` choices: 4 traced runs plus one primal run per flip (7), not 2^3 nested branches.

    The flipped branch needs primal values only, so later ``mvd`` choices in it are sampled, and the
    gradient stays unbiased (checked against the exact derivative of the three-coin expectation).
    """
    calls = []

    def probs_of(p, b0, b1):
        return p[..., 0] * 0.5, p[..., 1] * (0.6 + 0.4 * b0), p[..., 2] * (1 - 0.5 * b1)

    def value(b0, b1, b2):
        return (b0 + 2 * b1 - 3 * b2 + b0 * b2) ** 2

    def program(t, p):
        calls.append(1)
        b0 = t.sample("b0", D.Bernoulli(probs=probs_of(p, 0, 0)[0]), "mvd")
        b1 = t.sample("b1", D.Bernoulli(probs=probs_of(p, b0, 0)[1]), "mvd")
        b2 = t.sample("b2", D.Bernoulli(probs=probs_of(p, b0, b1)[2]), "mvd")
        return value(b0, b1, b2)

    def exact(p):
        total = torch.zeros((), dtype=F64)
        for c in itertools.product([0.0, 1.0], repeat=3):
            q = probs_of(p, c[0], c[1])
            weight = math.prod(qi if ci else 1 - qi for qi, ci in zip(q, c, strict=True))
            total = total + weight * value(*c)
        return total

    p = torch.tensor([0.2, 0.5, 0.7], dtype=F64, requires_grad=True)
    (g_exact,) = torch.autograd.grad(exact(p), p)
    leaf = p.detach().expand(40000, -1).clone().requires_grad_(True)
    torch.manual_seed(8)
    (draws,) = torch.autograd.grad(estimate(program, leaf).sum(), leaf)
    assert len(calls) == 7
    assert gradient_stats(draws, g_exact).max_abs_z < bonferroni_z(3, alpha=0.001)
