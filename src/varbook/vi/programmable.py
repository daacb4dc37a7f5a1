r"""Programmable variational inference: objectives as programs, gradients by program transformation :cite:`becker2024probabilistic`.

A *program* is a plain Python function ``program(t, *args)`` that draws random choices with
``t.sample(name, dist, strategy)`` and returns a tensor :math:`l`: one or more independent
estimates of an objective (ELBO, IWELBO, ...). Each random choice carries its own gradient
strategy:

* ``"reparam"``: :math:`v=g_\phi(\epsilon)`, differentiate through the sample;
* ``"reinforce"`` (optionally with a baseline :math:`b`): add :math:`(l-b)\nabla\log q(v)`;
* ``"enum"``: replace the choice by the exact sum :math:`\sum_k q(k)\,l(k)` over its support;
* ``"mvd"`` (Bernoulli): the measure-valued derivative, which adds
  :math:`(-1)^{v}\,(l(\neg v)-l(v))\,\nabla p` with the flipped branch run on *fresh*
  downstream randomness, primal values only: one plain run in which later choices are sampled
  whatever their strategy (so several ``mvd`` choices cost one run per unit, not :math:`2^n`).

:func:`estimate` runs the program and returns a *surrogate*: a tensor whose value is the
objective estimate and whose gradient is an unbiased estimate of the objective's gradient,
whatever mix of strategies the program uses. ``"enum"`` and ``"mvd"`` need "the rest of the
program" (its continuation): :func:`estimate` obtains it by re-running the program with the
choices made so far replayed (the same tensors, so pathwise gradients still flow) and the
enumerated or flipped value forced.

Shapes: the program's value has some shape ``S`` (one entry per independent estimate). A site's
log-density must have shape ``S``, possibly with extra *leading* dimensions (several samples
that belong to the same estimate, e.g. the :math:`K` particles of an IWELBO), which are summed.
An ``enum`` site enumerates, for each estimate, the joint configurations of all its coordinates
that belong to that estimate (the leading dimensions and the event dimensions): for an IWELBO(K)
over one Bernoulli that is :math:`2^K` configurations, each weighted by its probability
:math:`\prod_k q(c_k)`. The count is capped (:data:`MAX_ENUM`); beyond it ``enum`` raises.
Programs must be deterministic given their random choices.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import distributions as D

from ..estimators.bernoulli import enumerate_binary
from ..protocols import Baseline
from ..runtime import History, check_choice, descend, progress


@dataclass(frozen=True)
class Strategy:
    """A gradient strategy for one random choice."""

    name: str
    baseline: Baseline | float | torch.Tensor | None = None  # for REINFORCE: a number, or a baseline object

    def __post_init__(self):
        check_choice("gradient strategy", self.name, STRATEGIES)


STRATEGIES = ("reparam", "reinforce", "enum", "mvd", "none")
"""``none`` samples with no gradient and no score term: for programs that add their own (e.g. VIMCO)."""
OPTIMIZERS = ("sgd", "adam")
"""The optimisers :func:`maximise` steps with."""


def reinforce(baseline: Baseline | float | torch.Tensor | None = None) -> Strategy:
    """REINFORCE, optionally with a baseline (a number, or an object from :mod:`varbook.estimators.baselines`)."""
    return Strategy("reinforce", baseline)


def as_strategy(strategy: str | Strategy) -> Strategy:
    return strategy if isinstance(strategy, Strategy) else Strategy(str(strategy))


class _Fork(Exception):
    """Raised by the tracer at an ``enum`` or ``mvd`` choice: the estimator takes over from there."""

    def __init__(self, name: str, dist: D.Distribution, strategy: Strategy):
        super().__init__(name)
        self.name, self.dist, self.strategy = name, dist, strategy


@dataclass
class Tracer:
    """The handler a program receives as ``t``: replays fixed choices, samples new ones, records scores."""

    replay: dict[str, torch.Tensor] = field(default_factory=dict)
    values: dict[str, torch.Tensor] = field(default_factory=dict)
    new: dict[str, torch.Tensor] = field(default_factory=dict)
    scores: list[tuple[str, torch.Tensor, Strategy]] = field(default_factory=list)

    def sample(self, name: str, dist: D.Distribution, strategy: str | Strategy = "reparam") -> torch.Tensor:
        """Draw (or replay) the random choice ``name`` from ``dist`` with gradient ``strategy``."""
        if name in self.values:
            raise ValueError(f"the program draws the random choice {name!r} twice; names must be unique")
        if not isinstance(dist, D.Distribution):
            raise TypeError(f"random choice {name!r}: expected a torch Distribution, got {type(dist).__name__}")
        s = as_strategy(strategy)
        if name in self.replay:
            value = self.replay[name]
        elif s.name in ("enum", "mvd"):
            raise _Fork(name, dist, s)
        elif s.name == "reparam":
            if not dist.has_rsample:
                raise ValueError(
                    f"random choice {name!r}: {type(dist).__name__} cannot be reparameterised; "
                    "use 'reinforce', 'enum' or 'mvd'"
                )
            value = dist.rsample()
            self.new[name] = value
        else:
            value = dist.sample()
            self.new[name] = value
            if s.name == "reinforce":
                self.scores.append((name, dist.log_prob(value), s))
        self.values[name] = value
        return value


def _reduce_to(log_prob: torch.Tensor, shape: torch.Size, name: str) -> torch.Tensor:
    """Sum the extra leading dimensions of a site's log-density so it has the program value's shape."""
    extra = log_prob.dim() - len(shape)
    if extra < 0 or tuple(log_prob.shape[extra:]) != tuple(shape):
        raise ValueError(
            f"random choice {name!r}: its log-density has shape {tuple(log_prob.shape)}, which does not end "
            f"with the program value's shape {tuple(shape)}"
        )
    return log_prob.sum(tuple(range(extra))) if extra else log_prob


def _magic(log_prob: torch.Tensor) -> torch.Tensor:
    """Zero in value, :math:`\\nabla\\log q` in gradient."""
    return log_prob - log_prob.detach()


def estimate(program: Callable, *args, **kwargs) -> torch.Tensor:
    """The surrogate of ``program``: its value is the objective estimate, its gradient an unbiased estimate of the gradient.

    Maximise ``estimate(program).mean()`` to maximise the objective.
    """
    return _run(program, args, kwargs, {})


def _run(program, args, kwargs, replay: dict[str, torch.Tensor]) -> torch.Tensor:
    tracer = Tracer(replay=dict(replay))
    try:
        out = program(tracer, *args, **kwargs)
        if not isinstance(out, torch.Tensor):
            kind = type(out).__name__
            raise TypeError(f"a program must return a tensor of objective estimates, got {kind}")
    except _Fork as fork:
        fixed = {**replay, **tracer.new}
        if fork.strategy.name == "enum":
            out = _enumerate(program, args, kwargs, fixed, fork)
        else:
            out = _measure_valued(program, args, kwargs, fixed, fork)
    signal = out.detach()
    for name, log_prob, strategy in tracer.scores:
        log_prob = _reduce_to(log_prob, out.shape, name)
        b = strategy.baseline
        b_value: float | torch.Tensor
        if isinstance(b, Baseline):
            b_value = b.value()
            b.update(None, signal)  # a site has no per-unit score h - p: the baseline sees the losses only
        else:
            b_value = 0.0 if b is None else b
        out = out + (signal - b_value) * _magic(log_prob)  # + sg[l - b] (log p - sg[log p]): REINFORCE
    return out


def _bernoulli_base(dist: D.Distribution) -> D.Bernoulli | None:
    """The Bernoulli inside ``dist`` (itself, or the base of an ``Independent``), else ``None``."""
    base = dist.base_dist if isinstance(dist, D.Independent) else dist
    return base if isinstance(base, D.Bernoulli) else None


MAX_ENUM = 2**16
"""The most configurations an ``enum`` site may have per estimate (each costs one run of the rest of the program)."""


class _Probe(Tracer):
    """A tracer that samples every new choice plainly (no fork, no score): to learn the shape of a program's value."""

    def sample(self, name: str, dist: D.Distribution, strategy: str | Strategy = "reparam") -> torch.Tensor:
        value = self.replay[name] if name in self.replay else dist.sample()
        self.values[name] = value
        return value


def _primal(program, args, kwargs, replay: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[str]]:
    """One plain run of the program without gradients: the choices in ``replay`` replayed, every other one sampled.

    Its value is an unbiased estimate of the program's expectation given ``replay``, at the cost
    of one run: no enumeration, no flipped branches, no score terms. Also returns the names of
    the choices in the order the program made them.
    """
    probe = _Probe(replay=dict(replay))
    with torch.no_grad():
        out = program(probe, *args, **kwargs)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"a program must return a tensor of objective estimates, got {type(out).__name__}")
    return out, list(probe.values)


def _support(dist: D.Distribution, name: str, value_shape: torch.Size) -> torch.Tensor:
    r"""Every joint configuration of the choice within one estimate, stacked: ``(n_configs, *sample_shape)``.

    The sample shape is ``(*lead, *S, *event)``: the leading dimensions ``lead`` and the event
    dimensions belong to one estimate, so they are enumerated jointly (their product); the
    dimensions ``S`` of the program's value hold independent estimates, which each enumerate
    their own coordinates, in parallel.
    """
    batch, event = dist.batch_shape, dist.event_shape
    extra = len(batch) - len(value_shape)
    if extra < 0 or tuple(batch[extra:]) != tuple(value_shape):
        raise ValueError(
            f"random choice {name!r}: its log-density has shape {tuple(batch)}, which does not end "
            f"with the program value's shape {tuple(value_shape)}"
        )
    lead = batch[:extra]
    n_lead, n_event = math.prod(lead), math.prod(event)
    unit_shape = (*lead, *([1] * len(value_shape)), *event)  # one estimate's coordinates, broadcast over S
    full = (*lead, *value_shape, *event)
    base = _bernoulli_base(dist)
    if base is not None:
        n_bits = n_lead * n_event
        if 2**n_bits > MAX_ENUM:
            raise ValueError(
                f"random choice {name!r}: enumerating {n_bits} Bernoulli coordinates per estimate "
                f"({n_lead} leading x {n_event} event) needs 2^{n_bits} runs of the program"
            )
        configs = enumerate_binary(n_bits, base.probs.dtype, base.probs.device)
    elif isinstance(dist, D.Categorical):
        n = dist.probs.shape[-1]
        if n**n_lead > MAX_ENUM:
            raise ValueError(
                f"random choice {name!r}: enumerating {n_lead} categorical coordinates of {n} values per "
                f"estimate needs {n}^{n_lead} runs of the program"
            )
        grid = torch.arange(n, device=dist.probs.device)
        configs = torch.cartesian_prod(*[grid] * n_lead).reshape(n**n_lead, n_lead) if n_lead > 1 else grid[:, None]
    else:
        raise ValueError(
            f"random choice {name!r}: 'enum' needs a Bernoulli or Categorical distribution, got {type(dist).__name__}"
        )
    return configs.reshape(len(configs), *unit_shape).expand(len(configs), *full)


def _enumerate(program, args, kwargs, fixed, fork: _Fork) -> torch.Tensor:
    r""":math:`\sum_c q(c)\,l(c)` over the joint configurations :math:`c` of the forked choice within one estimate.

    Every branch replays the choices made so far; :math:`q(c)` is the product of the
    probabilities of the configuration's coordinates (its log-density summed over the leading
    dimensions). When the choice is the program's last, the rest of the program runs once on
    all configurations stacked along a new leading dimension (:func:`_enumerate_stacked`);
    otherwise, or if the program does not broadcast over that dimension, once per configuration.
    """
    probe, order = _primal(program, args, kwargs, {**fixed, fork.name: fork.dist.sample()})
    values = _support(fork.dist, fork.name, probe.shape)
    if order[-1] == fork.name:  # no choice after this one: the rest of the program is deterministic
        total = _enumerate_stacked(program, args, kwargs, fixed, fork, values, probe.shape)
        if total is not None:
            return total
    total = None
    for value in values:
        branch = _run(program, args, kwargs, {**fixed, fork.name: value})
        weight = _reduce_to(fork.dist.log_prob(value), branch.shape, fork.name).exp()
        total = weight * branch if total is None else total + weight * branch
    assert total is not None  # a support has at least two values
    return total


ENUM_CHUNK = 2**22
"""The most elements of enumerated values that :func:`_enumerate_stacked` evaluates in one run."""


def _enumerate_stacked(
    program, args, kwargs, fixed, fork: _Fork, values: torch.Tensor, value_shape
) -> torch.Tensor | None:
    r""":math:`\sum_c q(c)\,l(c)` with the configurations stacked along a new leading dimension, in chunks.

    Returns ``None`` when the program does not broadcast over that dimension: it fails, returns
    the wrong shape, or its first configuration's value differs from a run on that
    configuration alone (the check costs one run).
    """
    chunk = max(1, ENUM_CHUNK // max(1, values[0].numel()))
    n_lead = len(fork.dist.batch_shape) - len(value_shape)
    total: torch.Tensor | None = None
    for start in range(0, len(values), chunk):
        v = values[start : start + chunk]
        try:
            branch = _run(program, args, kwargs, {**fixed, fork.name: v})
        except (RuntimeError, ValueError, IndexError):  # the program cannot take a new leading dimension
            return None
        if tuple(branch.shape) != (len(v), *value_shape):
            return None
        if start == 0:
            alone, _ = _primal(program, args, kwargs, {**fixed, fork.name: values[0]})
            if not torch.allclose(branch[0].detach(), alone, rtol=1e-4, atol=1e-6):
                return None
        log_q = fork.dist.log_prob(v)  # (configs, *lead, *S)
        weight = (log_q.sum(tuple(range(1, 1 + n_lead))) if n_lead else log_q).exp()
        part = (weight * branch).sum(0)
        total = part if total is None else total + part
    return total


def _measure_valued(program, args, kwargs, fixed, fork: _Fork) -> torch.Tensor:
    base = _bernoulli_base(fork.dist)
    if base is None:
        raise ValueError(f"random choice {fork.name!r}: 'mvd' is implemented for Bernoulli choices only")
    v = fork.dist.sample()
    main = _run(program, args, kwargs, {**fixed, fork.name: v})
    value_shape = main.shape
    extra = v.dim() - len(fork.dist.event_shape) - len(value_shape)
    if extra < 0 or tuple(v.shape[extra : extra + len(value_shape)]) != tuple(value_shape):
        shapes = f"its shape {tuple(v.shape)} does not hold the value's {tuple(value_shape)}"
        raise ValueError(f"random choice {fork.name!r}: {shapes}")
    probs = base.probs.expand(v.shape)
    correction = torch.zeros_like(main)
    n_units = v.numel() // max(1, math.prod(value_shape))
    # unit u runs over the extra leading dims and the event dims; value dims stay aligned
    lead, tail = v.shape[:extra], v.shape[extra + len(value_shape) :]
    v_units = v.reshape(math.prod(lead), *value_shape, math.prod(tail))
    p_units = probs.reshape(math.prod(lead), *value_shape, math.prod(tail))
    for u in range(n_units):
        i, j = divmod(u, v_units.shape[-1])
        flipped = v_units.clone()
        flipped[i, ..., j] = 1 - flipped[i, ..., j]  # the choice ¬v of this unit
        # primal values only, fresh downstream randomness: one plain run (later enum/mvd choices are sampled)
        other, _ = _primal(program, args, kwargs, {**fixed, fork.name: flipped.reshape(v.shape)})
        sign = 1 - 2 * v_units[i, ..., j]
        # (-1)^v (l(¬v) - l(v)) ∇p: zero in value, the measure-valued derivative in gradient
        correction = correction + (sign * (other - main.detach())) * _magic(p_units[i, ..., j])
    return main + correction


def maximise(
    program: Callable,
    parameters,
    steps: int,
    *,
    lr: float = 1e-3,
    optimizer: str = "sgd",
    args: tuple = (),
    args_fn: Callable[[int], tuple] | None = None,
    record_every: int = 1,
    desc: str | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] = torch.mean,
    callback: Callable[[int], None] | None = None,
) -> History:
    r"""Gradient ascent on ``reduce(estimate(program))``: step :math:`\phi\leftarrow\phi+\eta\,\hat g`.

    :math:`\hat g` is the gradient of the surrogate that :func:`estimate` builds, an unbiased
    estimate of the objective's gradient :cite:`becker2024probabilistic`. Returns a
    :class:`~varbook.runtime.History` with the ``step`` and the mean estimate (``objective``)
    every ``record_every`` steps.

    ``args_fn(step)`` supplies the program's arguments per step (e.g. a minibatch). ``reduce``
    turns the estimates into the scalar to maximise (the mean by default; for several
    independent models stacked along a batch dimension, sum over that dimension instead, so each
    model keeps its own step size). ``callback(step)`` runs after every step (e.g. to evaluate).
    ``desc`` labels a progress bar (``None``: silent). Stops with
    :class:`~varbook.runtime.NonFiniteLossError` if an estimate becomes NaN or infinite.
    """
    params = list(parameters)
    opt: torch.optim.Optimizer
    if check_choice("optimizer", optimizer, OPTIMIZERS) == "sgd":
        opt = torch.optim.SGD(params, lr=lr)
    else:
        opt = torch.optim.Adam(params, lr=lr)
    history = History()
    steps_iter = progress(range(steps), desc=desc) if desc else range(steps)
    for step in steps_iter:
        step_args = args_fn(step) if args_fn is not None else args
        estimates = estimate(program, *step_args)
        objective = reduce(estimates)
        descend(opt, -objective, step, what="objective estimate")  # ascent on the objective
        if step % record_every == 0:
            history.log(step=step, objective=estimates.detach().mean())
        if callback is not None:
            callback(step)
    return history
