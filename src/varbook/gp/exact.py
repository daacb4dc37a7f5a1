r"""Exact Gaussian-process and Student-t-process regression in float64 :cite:`lee2022scale,shah2014student`.

Write :math:`C=K+\epsilon I` for the training kernel matrix with jitter (observation noise)
:math:`\epsilon`, :math:`n` for the number of training points and :math:`q=y^\top C^{-1}y`.

* GP with output scale :math:`s^2`: :math:`y\sim\mathcal N(0,s^2C)`. The scale that maximises
  the marginal likelihood is :math:`s^2=q/n` (used when ``scale_sq`` is ``None``).
* Student-t process (TP): the scale mixture :math:`\sigma^2\sim\mathrm{InvGamma}(\alpha,\beta)`,
  :math:`y\mid\sigma^2\sim\mathcal N(0,\sigma^2C)`, is a multivariate t with
  :math:`\nu=2\alpha` degrees of freedom and shape matrix :math:`SC`, :math:`S=\beta/\alpha`:

  .. math::
     \log p(y)=\ln\Gamma(\tfrac{\nu+n}2)-\ln\Gamma(\tfrac\nu2)-\tfrac n2\ln(\nu\pi)
     -\tfrac12\ln|SC|-\tfrac{\nu+n}2\ln\big(1+\tfrac{q}{S\nu}\big).

Predictions are for a noisy test target :math:`y_*`: the jitter :math:`\epsilon` is added to
:math:`k_{**}` for both processes (the official code predicts both from the noise-free posterior
covariance; we treat the GP and the TP alike, with noise). Every function accepts a leading batch of kernel matrices (a
grid of hyperparameters) and returns one value per matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..runtime import History, check_choice, descend, progress
from .kernels import nngp_relu, nngp_relu_diag

KINDS = ("gp", "tp")
"""The two processes: a Gaussian process and a Student-t process."""


def _check(k: torch.Tensor, y: torch.Tensor) -> None:
    if k.ndim < 2 or k.shape[-1] != k.shape[-2] or k.shape[-1] != y.shape[-1]:
        raise ValueError(f"need a kernel (..., n, n) and targets (n,), got {tuple(k.shape)} and {tuple(y.shape)}")
    if not k.is_floating_point() or k.dtype != y.dtype:
        raise TypeError(f"kernel and targets must share a floating dtype (float64 advised), got {k.dtype}, {y.dtype}")


def _check_positive(**values: Any) -> None:
    for name, v in values.items():
        t = torch.as_tensor(v)
        if not bool((t > 0).all()):
            raise ValueError(f"{name} must be positive, got {v}")


def solve_terms(k: torch.Tensor, y: torch.Tensor, jitter) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Cholesky factor :math:`L` of :math:`C=K+\epsilon I`, :math:`\ln|C|` and :math:`q=y^\top C^{-1}y`.

    Where :math:`C` is not positive definite, ``logdet`` and ``q`` are NaN (a grid search skips them).
    """
    _check(k, y)
    eye = torch.eye(k.shape[-1], dtype=k.dtype, device=k.device)
    c = k + torch.as_tensor(jitter, dtype=k.dtype, device=k.device)[..., None, None] * eye
    chol, info = torch.linalg.cholesky_ex(c)
    bad = info > 0
    chol = torch.where(bad[..., None, None], eye, chol)
    z = torch.linalg.solve_triangular(chol, y.expand(*chol.shape[:-1])[..., None], upper=False)[..., 0]
    nan = torch.full_like(z[..., 0], math.nan)
    logdet = torch.where(bad, nan, 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1))
    q = torch.where(bad, nan, (z * z).sum(-1))
    return chol, logdet, q


def _gp_from_terms(logdet: torch.Tensor, q: torch.Tensor, n: int, scale_sq=None) -> torch.Tensor:
    s2 = q / n if scale_sq is None else torch.as_tensor(scale_sq, dtype=q.dtype, device=q.device)
    return -0.5 * (n * torch.log(2 * math.pi * s2) + logdet + q / s2)


def _tp_from_terms(
    logdet: torch.Tensor,
    q: torch.Tensor,
    n: int,
    alpha,
    beta,
) -> torch.Tensor:
    alpha = torch.as_tensor(alpha, dtype=q.dtype, device=q.device)
    beta = torch.as_tensor(beta, dtype=q.dtype, device=q.device)
    if bool((alpha <= 0).any()) or bool((beta <= 0).any()):
        raise ValueError("alpha and beta must be positive")
    nu, s = 2 * alpha, beta / alpha
    return (
        torch.lgamma((nu + n) / 2)
        - torch.lgamma(nu / 2)
        - n / 2 * torch.log(nu * math.pi)
        - 0.5 * (n * torch.log(s) + logdet)
        - (nu + n) / 2 * torch.log1p(q / (s * nu))
    )


def gp_log_marginal(k: torch.Tensor, y: torch.Tensor, jitter, scale_sq=None) -> torch.Tensor:
    r""":math:`\log\mathcal N(y;0,s^2(K+\epsilon I))`; with ``scale_sq=None`` at its maximiser :math:`s^2=q/n`.

    NaN where :math:`K+\epsilon I` is not positive definite (see :func:`solve_terms`).
    """
    if scale_sq is not None:
        _check_positive(scale_sq=scale_sq)
    _, logdet, q = solve_terms(k, y, jitter)
    return _gp_from_terms(logdet, q, y.shape[-1], scale_sq)


def tp_log_marginal(k: torch.Tensor, y: torch.Tensor, jitter, alpha, beta) -> torch.Tensor:
    r"""Log marginal likelihood of the Student-t process (the module docstring's formula).

    ``alpha`` and ``beta`` broadcast against the batch shape of ``k``.
    """
    _, logdet, q = solve_terms(k, y, jitter)
    return _tp_from_terms(logdet, q, y.shape[-1], alpha, beta)


@dataclass(frozen=True)
class Predictive:
    r"""A per-point predictive: Gaussian (``df`` infinite) or Student-t, location ``loc`` and scale ``scale``.

    For a GP, ``scale`` is the standard deviation; for a TP, the scale of the t distribution.
    """

    loc: torch.Tensor
    scale: torch.Tensor
    df: float = math.inf

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        r"""Log density of each test target: :math:`\log\mathcal N` or :math:`\log t_\nu`."""
        z = (y - self.loc) / self.scale
        if math.isinf(self.df):
            return -0.5 * z**2 - self.scale.log() - 0.5 * math.log(2 * math.pi)
        nu = self.df
        norm = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
        return norm - self.scale.log() - (nu + 1) / 2 * torch.log1p(z**2 / nu)

    def nll(self, y: torch.Tensor) -> float:
        """Mean negative log-likelihood of the test targets ``y``."""
        return float(-self.log_prob(y).mean())

    def gaussian(self) -> Predictive:
        r"""The Gaussian with this predictive's location and variance: the t shape removed :cite:`lee2022scale`.

        A :math:`t_\nu(\mu,s)` has variance :math:`s^2\nu/(\nu-2)`, so the result is
        :math:`\mathcal N\big(\mu,\ s^2\nu/(\nu-2)\big)` (a Gaussian is returned unchanged). It
        separates what the TP gains by its heavy tails from what it gains by its location and width.

        >>> Predictive(torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64), df=4.0).gaussian().scale
        tensor([1.4142], dtype=torch.float64)
        """
        if math.isinf(self.df):
            return self
        if not self.df > 2:
            raise ValueError(f"a t with df <= 2 has no finite variance, got df={self.df}")
        return Predictive(self.loc, self.scale * math.sqrt(self.df / (self.df - 2)))


def predict(
    kind: str,
    k_train: torch.Tensor,
    k_cross: torch.Tensor,
    k_test_diag: torch.Tensor,
    y: torch.Tensor,
    jitter: float,
    scale_sq: float | None = None,
    alpha: float = 1.0,
    beta: float = 1.0,
) -> Predictive:
    r"""Predictive of noisy test targets for one kernel (no batch).

    With :math:`\mu_*=k_*^\top C^{-1}y` and :math:`v_*=k_{**}+\epsilon-k_*^\top C^{-1}k_*`:

    * GP: :math:`\mathcal N(\mu_*,\,s^2v_*)`;
    * TP: :math:`t_{\nu+n}\big(\mu_*,\ \tfrac{\nu+q/S}{\nu+n}\,S\,v_*\big)` (squared scale),
      :math:`\nu=2\alpha`, :math:`S=\beta/\alpha`.

    ``k_cross`` is ``(n, m)`` (train by test) and ``k_test_diag`` is ``(m,)``.
    """
    check_choice("kind", kind, KINDS)
    scale = 1.0 if scale_sq is None else scale_sq
    _check_positive(jitter=jitter, alpha=alpha, beta=beta, scale_sq=scale)
    cross, diag = tuple(k_cross.shape), tuple(k_test_diag.shape)
    if cross != (k_train.shape[-1], k_test_diag.shape[0]) or k_test_diag.ndim != 1:
        raise ValueError(f"need k_cross (n, m) and k_test_diag (m,), got {cross} and {diag}")
    chol, _, q = solve_terms(k_train, y, jitter)
    if math.isnan(float(q)):
        raise ValueError("K + jitter I is not positive definite: raise the jitter")
    a = torch.linalg.solve_triangular(chol, k_cross, upper=False)  # L^{-1} k_*
    z = torch.linalg.solve_triangular(chol, y[:, None], upper=False)[:, 0]
    loc = a.T @ z
    var = (k_test_diag + jitter - (a * a).sum(0)).clamp_min(1e-12 * jitter)
    n = y.shape[0]
    if kind == "gp":
        s2 = float(q) / n if scale_sq is None else scale_sq
        return Predictive(loc, (s2 * var).sqrt())
    nu, s = 2 * alpha, beta / alpha
    return Predictive(loc, ((nu + float(q) / s) / (nu + n) * s * var).sqrt(), df=nu + n)


@dataclass(frozen=True)
class Hyper:
    """Hyperparameters of an NNGP regression: kernel, jitter, and the scale prior of a TP (``alpha``, ``beta``)."""

    kind: str
    w_std: float
    b_std: float
    jitter: float
    depth: int = 4
    alpha: float = 1.0
    beta: float = 1.0
    log_marginal: float = math.nan

    def kernels(self, x_train: torch.Tensor, x_test: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``K(train, train)``, ``K(train, test)`` and the diagonal of ``K(test, test)``."""
        kw: dict[str, Any] = dict(depth=self.depth, w_std=self.w_std, b_std=self.b_std)
        return nngp_relu(x_train, **kw), nngp_relu(x_train, x_test, **kw), nngp_relu_diag(x_test, **kw)

    def predictive(self, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor) -> Predictive:
        """The predictive of this model at ``x_test``, conditioned on the training data."""
        k, kx, kd = self.kernels(x_train, x_test)
        return predict(self.kind, k, kx, kd, y_train, self.jitter, alpha=self.alpha, beta=self.beta)


@dataclass(frozen=True)
class Grid:
    """The hyperparameter grid of the official code, with the scale prior grid of the brief's calibration."""

    w_std: Sequence[float] = (1.0, 1.4, 2.0)
    b_std: Sequence[float] = (0.0, 0.3, 1.0)
    jitter: Sequence[float] = tuple(10.0**e for e in range(-6, 5))
    alpha: Sequence[float] = (1.0, 2.0, 3.0, 5.0)
    beta: Sequence[float] = (0.5, 1.0, 2.0, 3.0)


def fit_grids(
    x: torch.Tensor,
    y: torch.Tensor,
    depth: int = 4,
    grid: Grid | None = None,
) -> dict[str, Hyper]:
    r"""For the GP (with :math:`s^2=q/n`) and the TP, the grid point of largest marginal likelihood.

    All kernels of the grid are computed at once (a batch ``(W, B)``), all jitters at once
    (``(W, B, E)`` Cholesky factorisations), and both processes, with the TP's
    :math:`(\alpha,\beta)` grid, from the same :math:`\ln|C|` and :math:`q`.
    """
    grid = grid or Grid()
    opts: dict[str, Any] = dict(dtype=x.dtype, device=x.device)
    values = (grid.w_std, grid.b_std, grid.jitter, grid.alpha, grid.beta)
    if any(len(v) == 0 for v in values):
        raise ValueError(f"every axis of the grid needs at least one value, got {grid}")
    w, b, eps, a, bt = (torch.tensor(list(v), **opts) for v in values)
    k = nngp_relu(x, depth=depth, w_std=w[:, None], b_std=b[None, :])  # (W, B, n, n)
    k = k[:, :, None].expand(-1, -1, len(eps), -1, -1)
    _, logdet, q = solve_terms(k, y, eps)  # (W, B, E)
    scores = {
        "gp": _gp_from_terms(logdet, q, len(y)),
        "tp": _tp_from_terms(
            logdet[..., None, None],
            q[..., None, None],
            len(y),
            a[:, None],
            bt[None, :],
        ),
    }
    fits = {}
    for kind, score in scores.items():
        score = torch.nan_to_num(score, nan=-math.inf)
        if not bool(torch.isfinite(score).any()):
            raise ValueError("no grid point is positive definite: widen the jitter")
        i = [int(t) for t in torch.unravel_index(score.argmax(), score.shape)]
        extra = {} if kind == "gp" else dict(alpha=float(a[i[3]]), beta=float(bt[i[4]]))
        best = float(score.max())
        where = float(w[i[0]]), float(b[i[1]]), float(eps[i[2]])
        fits[kind] = Hyper(kind, *where, depth, log_marginal=best, **extra)
    return fits


def fit_grid(kind: str, x: torch.Tensor, y: torch.Tensor, depth: int = 4, grid: Grid | None = None) -> Hyper:
    """The grid point of largest marginal likelihood for one process (:func:`fit_grids`)."""
    check_choice("kind", kind, KINDS)
    return fit_grids(x, y, depth, grid)[kind]


def log_marginal(
    h: Hyper, x: torch.Tensor, y: torch.Tensor, params: dict[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """The marginal likelihood of ``h`` (or of the tensors in ``params`` that replace its fields), differentiable."""
    p = {name: torch.as_tensor(getattr(h, name), dtype=x.dtype, device=x.device) for name in _PARAMS[h.kind]}
    p.update(params or {})
    k = nngp_relu(x, depth=h.depth, w_std=p["w_std"], b_std=p["b_std"])
    if h.kind == "gp":
        return gp_log_marginal(k, y, p["jitter"])
    return tp_log_marginal(k, y, p["jitter"], p["alpha"], p["beta"])


_PARAMS = {"gp": ("w_std", "b_std", "jitter"), "tp": ("w_std", "b_std", "jitter", "alpha", "beta")}


def fit_adam(
    h: Hyper,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 30_000,
    lr: float = 1e-2,
    desc: str | None = None,
) -> tuple[Hyper, History]:
    r"""Maximise the marginal likelihood from ``h`` with Adam on the logs of the hyperparameters.

    A simplification of the official schedule: Adam at ``lr``, the rate halved when the
    *training* loss has not improved for 5 steps (``ReduceLROnPlateau``), stopping when it falls
    below ``1e-4`` or after ``steps`` steps. The official code instead steps the plateau on the
    NLL of a 10 % validation split every 500 steps and keeps the checkpoint of the best
    validation NLL (early stopping), starting from :math:`\alpha=\beta=2`. The loss is the
    negative log marginal likelihood divided by :math:`n`; the hyperparameters of the lowest loss
    seen are returned; the history logs the loss and the learning rate after each step. Note that the TP's marginal likelihood never exceeds the GP's with the
    best scale, and approaches it as :math:`\alpha\to\infty`: without early stopping this fit
    drives the TP towards the GP.
    """
    if steps < 1 or lr <= 0:
        raise ValueError(f"steps and lr must be positive, got {steps}, {lr}")
    names = _PARAMS[h.kind]
    opts: dict[str, Any] = dict(dtype=x.dtype, device=x.device)
    logs = {n: torch.tensor(max(getattr(h, n), 1e-6), **opts).log() for n in names}
    for t in logs.values():
        t.requires_grad_(True)
    opt = torch.optim.Adam(list(logs.values()), lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=5)
    history = History()
    best = (math.inf, {n: float(getattr(h, n)) for n in names})
    for step in progress(range(steps), desc=desc, disable=desc is None):
        loss = -log_marginal(h, x, y, {n: t.exp() for n, t in logs.items()}) / len(y)
        if float(loss.detach()) < best[0]:
            now = {n: float(t.detach().exp()) for n, t in logs.items()}
            best = (float(loss.detach()), now)
        descend(opt, loss, step, "negative log marginal likelihood")
        sched.step(float(loss.detach()))
        history.log(loss=loss.detach(), lr=opt.param_groups[0]["lr"])
        if opt.param_groups[0]["lr"] < 1e-4:
            break
    found = best[1]
    found_t = {n: torch.tensor(v, **opts) for n, v in found.items()}
    final = float(log_marginal(h, x, y, found_t))
    fitted: Hyper = replace(h, **found)  # type: ignore[arg-type]
    return replace(fitted, log_marginal=final), history


def nll_gap(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    depth: int = 4,
    grid: Grid | None = None,
) -> dict[str, float]:
    """Fit a GP and a TP by grid search on the training data; their test NLLs and the difference TP − GP.

    Two negative controls, each as a difference to the GP: ``"tp prior - gp"``, a deliberately
    wrong TP that predicts from its prior (:func:`prior_predictive`) instead of its posterior;
    and ``"tp gaussian - gp"``, the TP's predictive with its t shape removed
    (:meth:`Predictive.gaussian`: the TP's location and variance, a Gaussian shape). Also the
    fitted TP's ``"alpha"``.
    """
    fits = fit_grids(x_train, y_train, depth, grid)
    pred = {kind: h.predictive(x_train, y_train, x_test) for kind, h in fits.items()}
    nll = {kind: p.nll(y_test) for kind, p in pred.items()}
    wrong = prior_predictive(fits["tp"], x_test).nll(y_test)
    shape = pred["tp"].gaussian().nll(y_test)
    return {
        "gp": nll["gp"],
        "tp": nll["tp"],
        "tp - gp": nll["tp"] - nll["gp"],
        "tp prior - gp": wrong - nll["gp"],
        "tp gaussian - gp": shape - nll["gp"],
        "alpha": fits["tp"].alpha,
    }


def prior_predictive(h: Hyper, x_test: torch.Tensor) -> Predictive:
    r"""The TP's *prior* predictive of noisy targets, :math:`t_\nu(0,\ S(k_{**}+\epsilon))` (squared scale).

    What a TP that forgot to condition on the training data would predict: a negative control.
    """
    if h.kind != "tp":
        raise ValueError(f"prior_predictive is the control of a TP, got kind {h.kind!r}")
    diag = nngp_relu_diag(x_test, depth=h.depth, w_std=h.w_std, b_std=h.b_std)
    return Predictive(torch.zeros_like(diag), (h.beta / h.alpha * (diag + h.jitter)).sqrt(), df=2 * h.alpha)


def sweep_nll_gaps(
    datasets: dict[str, Callable[[int], Any]], seeds: Sequence[int], depth: int = 4, desc: str | None = None
) -> list[dict]:
    """:func:`nll_gap` for every data set and seed: one row per fit (``data``, ``seed``, ``gp``, ``tp``, ``tp - gp``).

    ``datasets`` maps a name to a function of the seed that returns a split with ``x_train``,
    ``y_train``, ``x_test`` and ``y_test`` (a :class:`varbook.data.heavy_tailed.RegressionSplit`).
    """
    jobs = [(name, seed) for name in datasets for seed in seeds]
    rows = []
    for name, seed in progress(jobs, desc=desc, disable=desc is None):
        d = datasets[name](seed)
        rows.append({"data": name, "seed": seed, **nll_gap(d.x_train, d.y_train, d.x_test, d.y_test, depth)})
    return rows


__all__ = [
    "KINDS",
    "Grid",
    "Hyper",
    "Predictive",
    "fit_adam",
    "fit_grid",
    "fit_grids",
    "gp_log_marginal",
    "log_marginal",
    "nll_gap",
    "predict",
    "prior_predictive",
    "solve_terms",
    "sweep_nll_gaps",
    "tp_log_marginal",
]
