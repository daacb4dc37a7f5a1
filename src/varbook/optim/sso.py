r"""Target-based surrogates: many cheap parameter steps per expensive loss gradient :cite:`lavington2023target`.

The loss is :math:`L(\theta)=\ell(f(\theta))` with *targets* :math:`z=f(\theta)` (the logits of a
batch, the actions of a policy). The gradient :math:`\nabla_z\ell` is the expensive *oracle*; the
model :math:`f` and its vector-Jacobian products are cheap. One oracle call at
:math:`z_t=f(\theta_t)` builds the surrogate (explicit sums over examples and outputs, one step
size :math:`\eta`)

.. math:: g_t(\theta)=\ell(z_t)+\langle\nabla\ell(z_t),f(\theta)-z_t\rangle+\frac1{2\eta}\lVert f(\theta)-z_t\rVert^2 ,

a global upper bound of :math:`\ell\circ f` when :math:`\ell` is :math:`(1/\eta)`-smooth in
:math:`z` (:data:`LOSSES` gives the largest such :math:`\eta`), equal to it at :math:`\theta_t`.
:class:`TargetSurrogate` minimises it with ``m`` steps of an inner optimiser; on the whole data set
this is majorisation-minimisation (the loss never increases), on a minibatch it is SSO, projected
SGD in target space. :class:`Counts` keeps oracle calls apart from passes through the model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .. import runtime
from ..runtime import History, check_choice
from .linesearch import Armijo
from .schedules import Schedule
from .schedules import schedule as make_schedule

# -------------------------------------------------------------------------------------------------
# Losses of the targets, with their smoothness
# -------------------------------------------------------------------------------------------------


def _logistic(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if not bool(((y == 0) | (y == 1)).all()):
        # libsvm's -1/+1 labels are a common slip: with y = -1 the gradient sigma(z) + 1 never vanishes
        raise ValueError("the logistic loss needs labels in {0, 1} (map -1/+1 labels with (y + 1) / 2)")
    y = y.reshape(z.shape).to(z.dtype)
    return (nn.functional.softplus(z) - y * z).sum()


def _softmax_ce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    onehot = nn.functional.one_hot(y, z.shape[-1]).to(z.dtype)
    return (torch.logsumexp(z, -1) - (z * onehot).sum(-1)).sum()


def _squared(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((z - y.reshape(z.shape).to(z.dtype)) ** 2).sum()


@dataclass(frozen=True)
class TargetLoss:
    r"""A loss of the targets, summed over examples and outputs, and its largest safe step :math:`\eta`.

    ``eta_max`` is the inverse of the loss's smoothness constant in :math:`z`: the surrogate is
    an upper bound for every :math:`\eta\le` ``eta_max``.
    """

    name: str
    eta_max: float
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def value(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """:math:`\\ell(z)`, a sum over all examples and outputs."""
        if z.shape[0] != y.shape[0]:
            raise ValueError(f"targets of {z.shape[0]} examples but {y.shape[0]} labels")
        return self.fn(z, y)

    def value_and_grad(self, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`\ell(z)` and :math:`\nabla_z\ell(z)` (one ``torch.autograd.grad``, no Jacobian)."""
        z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            value = self.value(z, y)
            (grad,) = torch.autograd.grad(value, z)
        return value.detach(), grad


LOSSES = {
    "logistic": TargetLoss("logistic", 4.0, _logistic),  # sigma(1 - sigma) <= 1/4 per logit
    "softmax_ce": TargetLoss("softmax_ce", 2.0, _softmax_ce),  # diag(p) - p p^T <= I / 2
    "squared": TargetLoss("squared", 1.0, _squared),  # 1/2 (z - y)^2 has curvature 1
}
"""The losses of the paper's smoothness table: binary logistic on one logit (labels 0/1), softmax
cross-entropy on ``k`` logits (integer labels), and half the squared error."""


def target_loss(name: str | TargetLoss) -> TargetLoss:
    """The loss ``name`` of :data:`LOSSES` (a :class:`TargetLoss` passes through)."""
    if isinstance(name, TargetLoss):
        return name
    return LOSSES[check_choice("target loss", name, tuple(LOSSES))]


def surrogate(
    z: torch.Tensor, z_t: torch.Tensor, loss_t: torch.Tensor | float, grad_t: torch.Tensor, eta: float
) -> torch.Tensor:
    r"""The target surrogate :math:`\ell(z_t)+\langle\nabla\ell(z_t),z-z_t\rangle+\lVert z-z_t\rVert^2/(2\eta)`.

    Explicit sums over every example and output, one step size ``eta``. ``z`` may carry extra
    leading dimensions (several parameter draws at once).
    """
    if z.shape[-z_t.ndim :] != z_t.shape or grad_t.shape != z_t.shape:
        shapes = (tuple(z.shape), tuple(z_t.shape), tuple(grad_t.shape))
        raise ValueError(f"the shapes of targets, anchor and gradient do not match: {shapes}")
    if not (isinstance(eta, int | float) and math.isfinite(eta) and eta > 0):
        raise ValueError(f"the target step eta must be a positive number, got {eta!r}")
    dz = z - z_t
    dims = tuple(range(-z_t.ndim, 0))
    # <grad, dz> + |dz|^2 / (2 eta)
    return loss_t + (dz * (grad_t + dz / (2 * eta))).sum(dims)


# -------------------------------------------------------------------------------------------------
# Counting oracle calls apart from model passes
# -------------------------------------------------------------------------------------------------


@dataclass
class Counts:
    """What an optimiser spent: expensive oracle calls and cheap work.

    ``oracle_calls``: gradients :math:`\\nabla_z\\ell` of a batch; ``loss_evaluations``: values of
    :math:`\\ell` without its gradient (a line search on the loss needs them); ``forward`` and
    ``backward``: passes through the model :math:`f` (a backward pass is a vector-Jacobian product).
    """

    oracle_calls: int = 0
    loss_evaluations: int = 0
    forward: int = 0
    backward: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(
            oracle_calls=self.oracle_calls,
            loss_evaluations=self.loss_evaluations,
            forward=self.forward,
            backward=self.backward,
        )


@dataclass
class Oracle:
    """The expensive gradient :math:`\\nabla_z\\ell`, counted; ``sign=-1`` is a negative control (wrong sign)."""

    loss: TargetLoss
    counts: Counts = field(default_factory=Counts)
    sign: float = 1.0

    def __call__(self, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss and its gradient at the targets ``z`` (one oracle call)."""
        value, grad = self.loss.value_and_grad(z, y)
        self.counts.oracle_calls += 1
        return value, self.sign * grad


def _check_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    lo, hi = bounds
    if not (0 < lo < hi and math.isfinite(hi)):
        raise ValueError(f"the target step's bounds must satisfy 0 < low < high < inf, got {bounds!r}")
    return float(lo), float(hi)


def target_armijo(
    loss: TargetLoss,
    z_t: torch.Tensor,
    y: torch.Tensor,
    loss_t: torch.Tensor | float,
    grad_t: torch.Tensor,
    start: float,
    c: float = 0.1,
    beta: float = 0.9,
    max_backtracks: int = 100,
    bounds: tuple[float, float] = (1e-4, 1e4),
    counts: Counts | None = None,
) -> float:
    r"""The target step of SSO-SLS: the first :math:`\eta=\text{start}\cdot\beta^j` with

    .. math:: \ell(z_t-\eta\nabla\ell(z_t))\le\ell(z_t)-c\,\eta\,\lVert\nabla\ell(z_t)\rVert^2 ,

    Armijo's condition in target space (each trial is one loss evaluation, no gradient), clipped
    to ``bounds``. With explicit sums the inequality reads the same as with the paper code's means
    (both sides scale by :math:`1/N`). The clip bounds and the start, however, apply here to our
    summed-scale :math:`\eta`; the official code clips its own step, which is larger by the batch
    size, to :math:`[10^{-4},10^4]`, so its cap corresponds to a smaller :math:`\eta` here.
    """
    if not 0 < c < 1 or not 0 < beta < 1 or not (start > 0 and math.isfinite(start)):
        raise ValueError(f"need 0 < c < 1, 0 < beta < 1 and a finite start > 0; got {c}, {beta}, {start}")
    lo, hi = _check_bounds(bounds)
    if not (isinstance(max_backtracks, int) and max_backtracks >= 1):
        raise ValueError(f"max_backtracks must be a positive integer, got {max_backtracks!r}")
    eta, gnorm2, f0 = min(max(start, lo), hi), float((grad_t * grad_t).sum()), float(loss_t)
    with torch.no_grad():
        for _ in range(max_backtracks):
            f1 = float(loss.value(z_t - eta * grad_t, y))
            if counts is not None:
                counts.loss_evaluations += 1
            if f1 <= f0 - c * eta * gnorm2 or eta * beta < lo:
                break
            eta *= beta
    return min(max(eta, lo), hi)


# -------------------------------------------------------------------------------------------------
# The surrogate method
# -------------------------------------------------------------------------------------------------

INNER = ("armijo", "lbfgs", "sgd")
"""Inner optimisers of the surrogate: Armijo line search (reset every outer step), L-BFGS with a
strong-Wolfe line search (``torch.optim.LBFGS``, fresh every outer step), plain gradient steps."""


class TargetSurrogate:
    r"""Minimise :math:`\ell(f(\theta))` with one oracle call and ``m`` surrogate steps per outer step.

    Each :meth:`step` on a batch ``(x, y)``: targets :math:`z_t=f(\theta_t)` (one forward pass),
    one oracle call :math:`\nabla\ell(z_t)`, then ``m`` steps of the inner optimiser on
    :func:`surrogate` with :math:`\eta_t` = ``schedule(t)`` (every surrogate evaluation is a
    forward pass, every gradient a backward pass too). On the whole data set this is full-batch
    majorisation-minimisation; on minibatches it is SSO.

    ``eta`` defaults to the loss's ``eta_max``; ``eta="armijo"`` chooses it at every outer step by
    :func:`target_armijo` (SSO-SLS), starting from the last one times ``outer["grow"]`` (2.0, the
    official code's ``expand_coeff``), and the schedule then multiplies it (``schedule(t)`` with
    :math:`\eta_0=1`). A callable ``schedule`` gives :math:`\eta_t` itself, so it cannot be combined
    with a numeric ``eta``. ``inner_lr`` is the step of ``inner="sgd"`` (only), ``armijo`` passes
    options to :class:`~varbook.optim.linesearch.Armijo` (``inner="armijo"`` only), ``outer`` to
    :func:`target_armijo` (``eta="armijo"`` only: ``c``, ``beta``, ``bounds``, ``grow``); an option
    that would be ignored raises a :class:`ValueError`.

    ``reset_step`` is where the inner Armijo search restarts at every outer step: ``"targets"``
    (default) converts the official code's reset value 10 on its mean-reduced surrogate
    :math:`\operatorname{mean}(\eta_t\nabla\ell\odot f+(f-z_t)^2)` to our summed one,
    :math:`10\cdot2\eta_t/N` for :math:`N` targets (the two surrogates differ by the factor
    :math:`2\eta_t/N` and a constant, so the searches then try the same points); a number restarts
    from that value whatever :math:`\eta_t` and :math:`N`.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: str | TargetLoss,
        eta: float | str | None = None,
        schedule: str | Schedule = "constant",
        inner: str = "armijo",
        m: int = 5,
        *,
        inner_lr: float | None = None,
        total_steps: int | None = None,
        armijo: dict | None = None,
        outer: dict | None = None,
        counts: Counts | None = None,
        oracle_sign: float = 1.0,
        reset_step: float | str = "targets",
    ):
        self.model, self.loss = model, target_loss(loss)
        self.outer: dict | None = None
        if callable(schedule) and eta not in (None, "armijo"):
            raise ValueError("a callable schedule gives eta_t itself: pass eta=None or 'armijo', not a number")
        if callable(schedule) and total_steps is not None:
            raise ValueError("total_steps is used by the schedule 'exponential' only, not by a callable schedule")
        if outer is not None and eta != "armijo":
            raise ValueError("outer options are for the target line search: they need eta='armijo'")
        if inner != "sgd" and inner_lr is not None:
            raise ValueError(f"inner_lr is the step of inner='sgd' only; inner={inner!r} would ignore it")
        if inner != "armijo" and armijo is not None:
            raise ValueError(f"armijo options are for inner='armijo' only; inner={inner!r} would ignore them")
        if reset_step != "targets" and not (
            isinstance(reset_step, int | float) and math.isfinite(reset_step) and reset_step > 0
        ):
            raise ValueError(f"reset_step must be 'targets' or a positive number, got {reset_step!r}")
        if inner != "armijo" and reset_step != "targets":
            raise ValueError(f"reset_step is for inner='armijo' only; inner={inner!r} would ignore it")
        self.reset_step = reset_step
        if eta == "armijo":
            self.outer = {"c": 0.1, "beta": 0.9, "grow": 2.0, "bounds": (1e-4, 1e4)} | (outer or {})
            unknown = set(self.outer) - {"c", "beta", "grow", "bounds", "max_backtracks"}
            if unknown:
                raise ValueError(f"unknown options of the outer line search: {sorted(unknown)}")
            o = self.outer
            if not (0 < o["c"] < 1 and 0 < o["beta"] < 1 and 1 <= o["grow"] < math.inf):
                raise ValueError(
                    f"the outer line search needs 0 < c < 1, 0 < beta < 1 and 1 <= grow < inf; got {o['c']}, "
                    f"{o['beta']}, {o['grow']}"
                )
            _check_bounds(o["bounds"])
            mb = o.get("max_backtracks", 100)
            if not (isinstance(mb, int) and mb >= 1):
                raise ValueError(f"max_backtracks of the outer line search must be a positive integer, got {mb!r}")
            eta = None
        elif isinstance(eta, str):
            raise ValueError(f"eta must be a positive number, None or 'armijo', got {eta!r}")
        eta = self.loss.eta_max if eta is None else eta
        if not (isinstance(eta, int | float) and math.isfinite(eta) and eta > 0):
            raise ValueError(f"the target step eta must be a positive number, got {eta!r}")
        if not isinstance(m, int) or m < 1:
            raise ValueError(f"the number of inner steps m must be a positive integer, got {m!r}")
        self.inner, self.m, self.eta = check_choice("inner optimiser", inner, INNER), m, float(eta)
        if inner == "sgd" and not (inner_lr is not None and inner_lr > 0):
            raise ValueError("inner='sgd' needs a positive inner_lr")
        self.inner_lr = inner_lr
        if isinstance(schedule, str):
            eta0 = 1.0 if self.outer is not None else self.eta
            self.schedule: Schedule = make_schedule(schedule, eta0, total_steps=total_steps)
        else:
            self.schedule = schedule
        self.counts = counts if counts is not None else Counts()
        self.oracle = Oracle(self.loss, self.counts, oracle_sign)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.line_search = Armijo(self.params, **(armijo or {}))
        self.t = 0
        self.last: dict[str, float] = {}

    def _closure(self, x: torch.Tensor, z_t: torch.Tensor, loss_t: torch.Tensor, grad_t: torch.Tensor, eta: float):
        def closure(backward: bool = True) -> torch.Tensor:
            z = self.model(x)
            self.counts.forward += 1
            value = surrogate(z, z_t, loss_t, grad_t, eta)
            if backward:
                value.backward()
                self.counts.backward += 1
            return value

        return closure

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One outer step on the batch ``(x, y)``; returns :math:`\\ell_B(z_t)`, the batch loss before it."""
        self.t += 1
        with torch.no_grad():
            z_t = self.model(x)
        self.counts.forward += 1
        loss_t, grad_t = self.oracle(z_t, y)
        runtime.check_finite(loss_t, self.t, "loss of the targets")
        if self.outer is None:
            eta = float(self.schedule(self.t))
            if not (math.isfinite(eta) and eta > 0):
                raise ValueError(f"the schedule gave eta_t = {eta} at step {self.t}: it must be positive")
        else:
            opts = {k: v for k, v in self.outer.items() if k != "grow"}
            start = self.eta * self.outer["grow"]
            self.eta = target_armijo(self.loss, z_t, y, loss_t, grad_t, start, counts=self.counts, **opts)
            eta = self.eta * float(self.schedule(self.t))
        closure = self._closure(x, z_t, loss_t, grad_t, eta)
        if self.inner == "armijo":
            # every outer step starts the line search afresh (the official code's 10, in our scaling)
            start = 20.0 * eta / z_t.numel() if self.reset_step == "targets" else float(self.reset_step)
            self.line_search.reset(start)
            for _ in range(self.m):
                self.line_search.step(closure)
        elif self.inner == "lbfgs":
            lbfgs = torch.optim.LBFGS(self.params, lr=1.0, max_iter=self.m, line_search_fn="strong_wolfe")

            def full_closure() -> torch.Tensor:
                lbfgs.zero_grad()
                return closure(True)

            lbfgs.step(full_closure)
        else:
            sgd = torch.optim.SGD(self.params, lr=float(self.inner_lr or 0.0))
            for j in range(self.m):
                runtime.descend(sgd, closure(False), j, "surrogate")
                self.counts.backward += 1
        with torch.no_grad():
            end = float(surrogate(self.model(x), z_t, loss_t, grad_t, eta))
        self.counts.forward += 1
        self.last = dict(loss=float(loss_t), surrogate_end=end, eta=eta)
        return float(loss_t)


def linear_projection_step(x: torch.Tensor, theta: torch.Tensor, grad_t: torch.Tensor, eta: float) -> torch.Tensor:
    r"""The exact SSO step of a linear model :math:`f(\theta)=X\theta`: a least-squares projection.

    .. math:: \theta_{t+1}=\theta_t-\eta\,(X^\top X)^{+}X^\top\nabla\ell(z_t),

    the minimiser of the surrogate (``theta`` of shape ``(d, k)``, ``grad_t`` of shape ``(n, k)``).
    """
    if x.ndim != 2 or theta.ndim != 2 or grad_t.shape != (x.shape[0], theta.shape[1]) or theta.shape[0] != x.shape[1]:
        raise ValueError(
            f"need x (n, d), theta (d, k), grad (n, k); got {tuple(x.shape)}, {tuple(theta.shape)}, {tuple(grad_t.shape)}"
        )
    if not (eta > 0 and math.isfinite(eta)):
        raise ValueError(f"eta must be a positive finite number, got {eta}")
    return theta - eta * torch.linalg.pinv(x.T @ x) @ (x.T @ grad_t)


@torch.no_grad()
def surrogate_gaps(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str | TargetLoss,
    eta: float,
    n_points: int = 1000,
    radius: float = 1.0,
    generator: torch.Generator | None = None,
    chunk: int = 50,
) -> torch.Tensor:
    r""":math:`g_t(\theta)-\ell(f(\theta))` at ``n_points`` random :math:`\theta=\theta_t+r\varepsilon` near the model's parameters.

    :math:`\varepsilon` is standard normal in every parameter, :math:`r` = ``radius``. All points
    go through the model at once (``torch.func.vmap``), in chunks of ``chunk``. The bound holds when
    every gap is :math:`\ge0`, which the theory promises for ``eta`` up to the loss's ``eta_max``.
    """
    loss = target_loss(loss)
    if not eta > 0 or n_points < 1 or not radius > 0 or chunk < 1:
        raise ValueError(
            f"need eta > 0, n_points >= 1, radius > 0 and chunk >= 1; got {eta}, {n_points}, {radius}, {chunk}"
        )
    theta_t = {k: v.detach() for k, v in model.named_parameters()}
    z_t = model(x)
    loss_t, grad_t = loss.value_and_grad(z_t, y)
    f = torch.func.vmap(lambda p: torch.func.functional_call(model, p, (x,)))
    ell = torch.func.vmap(lambda z: loss.value(z, y))
    gaps = []
    for start in range(0, n_points, chunk):
        k = min(chunk, n_points - start)
        points = {
            name: v + radius * runtime.randn(k, *v.shape, generator=generator, device=v.device, dtype=v.dtype)
            for name, v in theta_t.items()
        }
        z = f(points)
        gaps.append(surrogate(z, z_t, loss_t, grad_t, eta) - ell(z))
    return torch.cat(gaps)


# -------------------------------------------------------------------------------------------------
# Baselines and the training loop
# -------------------------------------------------------------------------------------------------

StepFn = Callable[[torch.Tensor, torch.Tensor], float]
"""One step on a batch ``(x, y)`` that costs one oracle call; returns the batch loss before it."""


def gradient_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss: str | TargetLoss, counts: Counts) -> StepFn:
    """A ``torch.optim`` step (SGD, Adam, Adagrad, ...) on the mean batch loss: one oracle call, one pass each way."""
    loss = target_loss(loss)

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        value = loss.value(model(x), y) / len(y)
        runtime.descend(optimizer, value)
        counts.oracle_calls += 1
        counts.forward += 1
        counts.backward += 1
        return float(value.detach()) * len(y)

    return step


def sls_step(model: nn.Module, loss: str | TargetLoss, counts: Counts, **armijo) -> StepFn:
    """The SLS baseline: an Armijo line search on the mean batch loss (each step size tried is a loss evaluation).

    ``armijo`` goes to :class:`~varbook.optim.linesearch.Armijo` (e.g. ``grow``, ``init_step``).
    """
    loss = target_loss(loss)
    opt = Armijo([p for p in model.parameters() if p.requires_grad], **armijo)

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        def closure(backward: bool = True) -> torch.Tensor:
            value = loss.value(model(x), y) / len(y)
            counts.forward += 1
            if backward:
                value.backward()
                counts.oracle_calls += 1
                counts.backward += 1
            else:
                counts.loss_evaluations += 1
            return value

        return float(opt.step(closure).detach()) * len(y)

    return step


@torch.no_grad()
def mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str | TargetLoss) -> float:
    """The loss per example on the whole table (bookkeeping: not counted)."""
    return float(target_loss(loss).value(model(x), y)) / len(y)


def clock(device: torch.device) -> float:
    """Seconds: CPU time of this process on a CPU (robust to other jobs), wall time on a GPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return time.process_time()


def train(
    step: StepFn | TargetSurrogate,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str | TargetLoss,
    oracle_calls: int,
    batch_size: int | None = None,
    *,
    counts: Counts | None = None,
    generator: torch.Generator | None = None,
    eval_every: int = 10,
    desc: str | None = None,
) -> History:
    """Run ``oracle_calls`` steps on batches of ``batch_size`` rows (``None``: the whole table, full batch).

    Batches are drawn without replacement within an epoch (the last incomplete batch is dropped).
    Logs, at step 0 and every ``eval_every`` steps: ``oracle_calls``, the mean ``loss`` on the
    whole table, ``seconds`` spent in the steps (evaluation excluded), and the :class:`Counts`
    (taken from a :class:`TargetSurrogate`, else from ``counts``). ``batch_loss`` logs every step's
    value. Stops with a clear message if a loss is not finite.
    """
    if oracle_calls < 1 or eval_every < 1:
        raise ValueError(f"oracle_calls and eval_every must be positive, got {oracle_calls}, {eval_every}")
    n = len(y)
    if batch_size is not None and not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be between 1 and {n}, got {batch_size}")
    step_fn: StepFn
    if isinstance(step, TargetSurrogate):
        if counts is not None and counts is not step.counts:
            raise ValueError("a TargetSurrogate counts into its own Counts: pass counts=None or step.counts")
        counts, step_fn = step.counts, step.step
    else:
        counts, step_fn = counts or Counts(), step
    history, seconds = History(), 0.0

    def log(t: int) -> None:
        history.log(step=t, loss=mean_loss(model, x, y, loss), seconds=seconds, **counts.as_dict())

    log(0)
    batches: list[torch.Tensor] = []
    for t in runtime.progress(range(1, oracle_calls + 1), desc=desc, disable=desc is None):
        if batch_size is None:
            xb, yb = x, y
        else:
            if not batches:
                perm = runtime.randperm(n, generator=generator, device=x.device)
                batches = list(perm[: n - n % batch_size].split(batch_size))[::-1]
            idx = batches.pop()
            xb, yb = x[idx], y[idx]
        start = clock(x.device)
        value = step_fn(xb, yb)
        seconds += clock(x.device) - start
        runtime.check_finite(value, t, "batch loss")
        history.log(batch_loss=value / len(yb))
        if t % eval_every == 0 or t == oracle_calls:
            log(t)
    return history


def tune(run: Callable[[float], History], grid: Sequence[float]) -> tuple[float, History, dict[float, float]]:
    """Run ``run(lr)`` for every learning rate of ``grid``; the best by final ``loss``, its history, and every final loss.

    A run that diverges (its loss stops being finite) counts as ``inf``.

    >>> best, _, finals = tune(lambda lr: History(loss=[abs(lr - 0.1)]), [0.01, 0.1, 1.0])
    >>> best, finals[1.0]
    (0.1, 0.9)
    """
    if not grid:
        raise ValueError("the grid of learning rates is empty")
    finals: dict[float, float] = {}
    best: tuple[float, History] | None = None
    for lr in grid:
        try:
            history = run(lr)
            finals[lr] = history.last("loss")
        except FloatingPointError:
            finals[lr] = math.inf
            continue
        if math.isfinite(finals[lr]) and (best is None or finals[lr] < best[1].last("loss")):
            best = (lr, history)
    if best is None:
        raise FloatingPointError(f"every learning rate of {list(grid)} diverged")
    return best[0], best[1], finals


__all__ = [
    "INNER",
    "LOSSES",
    "Counts",
    "Oracle",
    "StepFn",
    "TargetLoss",
    "TargetSurrogate",
    "gradient_step",
    "linear_projection_step",
    "mean_loss",
    "sls_step",
    "surrogate",
    "surrogate_gaps",
    "clock",
    "target_armijo",
    "target_loss",
    "train",
    "tune",
]
