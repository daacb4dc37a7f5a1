import pytest
import torch

from varbook.estimators import QuadraticToy, bonferroni_z, exact_gradient, gradient_samples, gradient_stats, peers
from varbook.estimators.bernoulli import bernoulli_log_prob, enumerate_binary

D = torch.float64


@pytest.fixture
def problem():
    g = torch.Generator().manual_seed(0)
    toy = QuadraticToy(5, m=4, offset=2.0, generator=g)
    a = torch.randn(5, generator=g, dtype=D)
    return toy, a, g


def test_entropy_gradient_matches_autograd():
    a = torch.randn(6, dtype=D, requires_grad=True)
    p = torch.sigmoid(a)
    entropy = -(p * p.log() + (1 - p) * (1 - p).log()).sum()
    (expected,) = torch.autograd.grad(entropy, a)
    assert torch.allclose(peers.entropy_gradient(a.detach()), expected)


def test_ms_per_million_warms_up_then_times_the_best_of_repeats():
    sizes = []
    ms = peers.ms_per_million(sizes.append, n_units=10, n_rows=500, repeats=2)
    assert sizes == [1000, 500, 500]
    assert ms >= 0


@pytest.mark.parametrize("estimator", ["st_sigmoid", "sts"])
def test_relaxit_estimates_have_our_distribution(problem, estimator):
    pytest.importorskip("relaxit")
    toy, a, g = problem
    exact = exact_gradient(a, toy)
    torch.manual_seed(0)
    theirs = gradient_stats(peers.relaxit_samples(estimator, a, toy, 20000), exact)
    ours = gradient_stats(gradient_samples(estimator, a, toy, 20000, g), exact)
    assert peers.mean_difference_z(theirs, ours) < bonferroni_z(5, alpha=0.001)
    assert theirs.trace_var == pytest.approx(ours.trace_var, rel=0.1)
    with pytest.raises(ValueError, match="no counterpart"):
        peers.relaxit_samples("reinforce", a, toy, 10)


def test_relaxit_comparison_rows(problem):
    pytest.importorskip("relaxit")
    toy, a, g = problem
    exact = exact_gradient(a, toy)
    ours = gradient_stats(gradient_samples("st_sigmoid", a, toy, 500, g), exact)
    rows = peers.relaxit_comparison({"ST": ("st_sigmoid", ours)}, a, toy, exact, 500, g)
    assert list(rows) == ["ST"] and rows["ST"]["tr Var ours"] == ours.trace_var
    assert set(rows["ST"]) >= {"max |mean difference|/s.e.", "ms per 1e6 samples, relaxit"}


def test_pyro_and_our_negative_elbo_gradients_are_unbiased(problem):
    pytest.importorskip("pyro")
    toy, a, g = problem
    exact = exact_gradient(a, toy)
    torch.manual_seed(0)
    out = peers.pyro_comparison(a, toy, exact, 200, g)
    assert list(out) == ["Pyro TraceGraph_ELBO", "varbook (vectorised)"]
    # the target, -grad ELBO, by enumeration: grad of E_q[L] + E_q[log q] (uniform prior: a constant)
    a_ = a.clone().requires_grad_(True)
    s = enumerate_binary(5)
    log_q = bernoulli_log_prob(s, a_).sum(-1)
    (target,) = torch.autograd.grad((log_q.exp() * (toy(s) + log_q)).sum(), a_)
    for stats, ms in out.values():
        assert torch.allclose(stats.mean - stats.bias, target)
        assert stats.max_abs_z < bonferroni_z(5, alpha=0.001) and ms > 0


def test_pyro_variance_is_that_of_its_learning_signal():
    """Pyro weights the score by L + log q - log p: more variance than ours, which adds the entropy term exactly."""
    pytest.importorskip("pyro")
    from varbook.estimators import reinforce_moments

    g = torch.Generator().manual_seed(0)
    toy = QuadraticToy(5, m=4, offset=0.0, generator=g)  # no offset: log q - log p dominates the signal
    a = torch.randn(5, generator=g, dtype=D)
    exact = exact_gradient(a, toy)
    torch.manual_seed(1)
    (theirs, _), (ours, _) = peers.pyro_comparison(a, toy, exact, 1000, g).values()
    _, var_pyro = reinforce_moments(a, peers.elbo_learning_signal(a, toy), 0.0)
    _, var_ours = reinforce_moments(a, toy, 0.0)
    var_pyro, var_ours = float(var_pyro.sum()), float(var_ours.sum())
    assert var_pyro > 2 * var_ours  # 2.1 here: the two predictions are far apart
    # a trace variance from 1000 draws: relative s.e. about sqrt(2 / 1000) = 4.5 % for Gaussian draws; 20 % leaves
    # room for heavier tails
    assert theirs.trace_var == pytest.approx(var_pyro, rel=0.2)
    assert ours.trace_var == pytest.approx(var_ours, rel=0.2)
