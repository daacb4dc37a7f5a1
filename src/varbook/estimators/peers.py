r"""Our binary-neuron estimators side by side with peer libraries', on the same toy problem.

* relaxit's ``StraightThroughBernoulli`` (our ST-σ′) and ``StochasticTimesSmooth`` (our STS):
  the same estimators, so the same distribution of estimates;
* Pyro's ``TraceGraph_ELBO``: the score-function gradient :cite:`bingham2019pyro` of an ELBO
  whose guide is :math:`q(h)=\mathrm{Bern}(\sigma(a))`, whose model has a uniform prior over
  :math:`h` and a factor :math:`-L(h)`, so that
  :math:`-\nabla_a\mathrm{ELBO}=\nabla_a\mathbb E_q[L]-\nabla_a H(q)` with
  :math:`\partial H/\partial a_i=-a_i\,p_i(1-p_i)`.

Both peers come from the ``peers`` extra; a reader without one gets an :class:`ImportError`
that names the package.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from .bernoulli import bernoulli_log_prob, gradient_samples
from .variance import GradientStats, gradient_stats, mean_difference_z

Loss = Callable[[torch.Tensor], torch.Tensor]


def _relaxit_class(estimator: str):
    try:
        from relaxit.distributions import StochasticTimesSmooth, StraightThroughBernoulli
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the relaxit comparison needs the package relaxit (pip install 'varbook[peers]')") from err
    classes = {"st_sigmoid": StraightThroughBernoulli, "sts": StochasticTimesSmooth}
    if estimator not in classes:
        raise ValueError(f"relaxit has no counterpart of {estimator!r}: use one of {', '.join(classes)}")
    return classes[estimator]


def relaxit_samples(estimator: str, a: torch.Tensor, loss_fn: Loss, n_samples: int) -> torch.Tensor:
    """``n_samples`` gradient estimates ``(n_samples, n)`` from relaxit's variable for ``estimator``.

    relaxit's straight-through variable passes the gradient through :math:`p=\\sigma(a)` (our
    ``st_sigmoid``); its STS variable is our ``sts``. relaxit draws from torch's global generator.
    """
    cls = _relaxit_class(estimator)
    logits = a.expand(n_samples, -1).clone().requires_grad_(True)
    h = cls(logits=logits).rsample()
    (grad,) = torch.autograd.grad(loss_fn(h).sum(), logits)
    return grad


def ms_per_million(fn: Callable[[int], object], n_units: int, n_rows: int = 100_000, repeats: int = 3) -> float:
    """Milliseconds per :math:`10^6` unit samples of ``fn(n_rows)`` (rows of ``n_units``), best of ``repeats``.

    ``fn(1000)`` runs once first as a warm-up.
    """
    fn(1000)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(n_rows)
        best = min(best, time.perf_counter() - start)
    return 1e3 * best * 1e6 / (n_rows * n_units)


def relaxit_comparison(
    pairs: dict[str, tuple[str, GradientStats]],
    a: torch.Tensor,
    loss_fn: Loss,
    exact: torch.Tensor,
    n_samples: int,
    generator: torch.Generator | None = None,
) -> dict[str, dict[str, float]]:
    """relaxit against our estimators: mean difference, trace variances and speed, one row per label.

    ``pairs`` maps a label to ``(estimator, stats of our estimates)``; relaxit draws
    ``n_samples`` estimates of the same gradient. The timing runs both implementations on
    :math:`10^5` rows (ours with ``generator``).
    """
    rows = {}
    for label, (estimator, ours) in pairs.items():

        def run_ours(n: int, estimator: str = estimator) -> torch.Tensor:
            return gradient_samples(estimator, a, loss_fn, n, generator)

        def run_relaxit(n: int, estimator: str = estimator) -> torch.Tensor:
            return relaxit_samples(estimator, a, loss_fn, n)

        theirs = gradient_stats(relaxit_samples(estimator, a, loss_fn, n_samples), exact)
        rows[label] = {
            "max |mean difference|/s.e.": mean_difference_z(theirs, ours),
            "tr Var ours": ours.trace_var,
            "tr Var relaxit": theirs.trace_var,
            "ms per 1e6 samples, ours": ms_per_million(run_ours, a.shape[-1]),
            "ms per 1e6 samples, relaxit": ms_per_million(run_relaxit, a.shape[-1]),
        }
    return rows


def entropy_gradient(a: torch.Tensor) -> torch.Tensor:
    r""":math:`\partial H(\mathrm{Bern}(\sigma(a)))/\partial a=-a\,p(1-p)` per unit, :math:`p=\sigma(a)`."""
    p = torch.sigmoid(a)
    return -a * p * (1 - p)


def elbo_learning_signal(a: torch.Tensor, loss_fn: Loss) -> Loss:
    r"""The learning signal :math:`h\mapsto L(h)+\log q(h)-\log p(h)` that weights Pyro's score term.

    ``TraceGraph_ELBO`` (no baseline) estimates :math:`-\nabla_a\mathrm{ELBO}` by
    :math:`(h-p)\,(L(h)+\log q(h)-\log p(h))` with :math:`q=\mathrm{Bern}(\sigma(a))` and the uniform
    prior :math:`p(h)=2^{-n}`: the entropy term is estimated by Monte Carlo with the loss. Pass
    the returned callable to :func:`~varbook.estimators.bernoulli.reinforce_moments` (baseline 0)
    for the exact mean and variance of Pyro's estimate; ours adds the entropy gradient exactly and
    weights the score by :math:`L(h)` alone.
    """
    a = a.detach()
    log_prior = -a.shape[-1] * torch.log(torch.tensor(2.0, dtype=a.dtype))

    def signal(h: torch.Tensor) -> torch.Tensor:
        return loss_fn(h) + bernoulli_log_prob(h, a).sum(-1) - log_prior

    return signal


def pyro_gradients(a: torch.Tensor, loss_fn: Loss, n_samples: int) -> torch.Tensor:
    """``n_samples`` single-sample estimates of :math:`-\\nabla_a\\mathrm{ELBO}` by Pyro's ``TraceGraph_ELBO``.

    Clears Pyro's parameter store; Pyro draws from torch's global generator.
    """
    try:
        import pyro
        import pyro.distributions as dist
        from pyro.infer import TraceGraph_ELBO
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the Pyro comparison needs the package pyro-ppl (pip install 'varbook[peers]')") from err
    pyro.clear_param_store()

    def model():
        h = pyro.sample("h", dist.Bernoulli(torch.full_like(a, 0.5)).to_event(1))  # uniform prior
        pyro.factor("loss", -loss_fn(h))

    def guide():
        pyro.sample("h", dist.Bernoulli(logits=pyro.param("a", a.clone())).to_event(1))

    elbo = TraceGraph_ELBO()
    grads = []
    for _ in range(n_samples):
        elbo.loss_and_grads(model, guide)  # accumulates d(-ELBO)/da into the parameter's .grad
        leaf = pyro.param("a").unconstrained()  # type: ignore[attr-defined]
        grads.append(leaf.grad.clone())
        leaf.grad = None
    return torch.stack(grads)


def pyro_comparison(
    a: torch.Tensor, loss_fn: Loss, exact: torch.Tensor, n_samples: int, generator: torch.Generator | None = None
) -> dict[str, tuple[GradientStats, float]]:
    r"""Pyro's and our estimates of :math:`-\nabla_a\mathrm{ELBO}`, each with its milliseconds per estimate.

    ``exact`` is :math:`\nabla_a\mathbb E[L]`; ours is REINFORCE with no baseline plus the exact
    entropy term, :math:`(h-p)L(h)-\nabla_a H`. Returns a label to ``(stats, ms)`` map.
    """
    start = time.perf_counter()
    theirs = pyro_gradients(a, loss_fn, n_samples)
    pyro_ms = 1e3 * (time.perf_counter() - start) / n_samples
    target = exact - entropy_gradient(a)  # gradient of -ELBO = grad E[L] - grad H
    start = time.perf_counter()
    ours = gradient_samples("reinforce", a, loss_fn, n_samples, generator) - entropy_gradient(a)
    ours_ms = 1e3 * (time.perf_counter() - start) / n_samples
    return {
        "Pyro TraceGraph_ELBO": (gradient_stats(theirs, target), pyro_ms),
        "varbook (vectorised)": (gradient_stats(ours, target), ours_ms),
    }
