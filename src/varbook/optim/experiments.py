"""The experiments of the target-surrogate chapter as plain functions: methods compared at equal oracle calls.

Every run starts from the same initial weights (seeded) and sees the same batches (a generator
with the same seed), so that methods differ only in how they step. A *maker*
``make(model, counts)`` builds a method's step for a fresh model: :func:`optimiser_maker` for a
``torch.optim`` optimiser, :func:`surrogate_maker` for :class:`~varbook.optim.sso.TargetSurrogate`,
or any function with that signature :cite:`lavington2023target`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .. import runtime
from ..data.tables import Table
from ..nn.mlp import MLP
from ..runtime import History
from . import imitation, sso

Maker = Callable[[nn.Module, sso.Counts], "sso.StepFn | sso.TargetSurrogate"]
"""``make(model, counts)``: the step of one method for a fresh model, counting into ``counts``."""


def linear_model(n_features: int, k: int, seed: int, device=None) -> nn.Module:
    """A float64 linear model ``n_features -> k`` with the initial weights of ``seed``."""
    runtime.seed_all(seed)
    return nn.Linear(n_features, k).to(device, torch.float64)


def mlp_model(n_features: int, k: int, seed: int, device=None, width: int = 256) -> nn.Module:
    """A float64 network with one hidden layer of ``width`` ReLU units, initial weights of ``seed``."""
    runtime.seed_all(seed)
    return MLP(n_features, [width], k).to(device, torch.float64)


def optimiser_maker(lr: float, loss: str = "softmax_ce", optimizer: type = torch.optim.SGD) -> Maker:
    """A ``torch.optim`` optimiser with learning rate ``lr`` on the mean batch loss."""
    return lambda model, counts: sso.gradient_step(model, optimizer(model.parameters(), lr=lr), loss, counts)


def surrogate_maker(m: int, loss: str = "softmax_ce", **options) -> Maker:
    """:class:`~varbook.optim.sso.TargetSurrogate` with ``m`` inner steps (``options`` go to it)."""
    return lambda model, counts: sso.TargetSurrogate(model, loss, m=m, counts=counts, **options)


def run(
    table: Table,
    make: Maker,
    oracle_calls: int,
    batch_size: int | None,
    seed: int,
    *,
    k: int = 10,
    loss: str = "softmax_ce",
    net: Callable[..., nn.Module] = linear_model,
    eval_every: int = 5,
) -> History:
    """One method on ``table`` for ``oracle_calls`` steps, from the seed's initial weights and batches."""
    model, counts = net(table.n_features, k, seed, table.x.device), sso.Counts()
    step, generator = make(model, counts), torch.Generator().manual_seed(seed)
    args = (step, model, table.x, table.y, loss, oracle_calls, batch_size)
    return sso.train(*args, counts=counts, generator=generator, eval_every=eval_every)


def tuned(
    table: Table, optimizer: type, grid: Sequence[float], oracle_calls: int, batch_size: int, seed: int, **kw
) -> tuple[float, History, dict[float, float]]:
    """A ``torch.optim`` optimiser at every learning rate of ``grid``: the best, its history, every final loss."""
    loss = kw.get("loss", "softmax_ce")
    return sso.tune(
        lambda lr: run(table, optimiser_maker(lr, loss, optimizer), oracle_calls, batch_size, seed, **kw), grid
    )


PEERS = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam, "Adagrad": torch.optim.Adagrad}
"""The ``torch.optim`` baselines of :func:`compare` (SGD alone with ``peers=False``)."""


def compare(
    table: Table,
    ms: Sequence[int],
    grid: Sequence[float],
    oracle_calls: int,
    batch_size: int,
    seed: int,
    peers: bool = True,
    desc: str | None = None,
    etas: Sequence[float | str] = ("armijo",),
) -> tuple[dict[str, History], dict[str, float]]:
    """Tuned SGD (and Adam, Adagrad with ``peers``), SLS, and SSO with each target step of ``etas`` and each ``m``.

    All at equal oracle calls. ``"armijo"`` in ``etas`` is SSO-SLS (runs named ``SSO m=<m>``): its
    target step chosen by :func:`~varbook.optim.sso.target_armijo`; a number is a constant target
    step (runs named ``SSO m=<m>, η=<eta>``). SLS starts from 1 and grows its step by
    :math:`2^{B/n}` per step, the official code's defaults. Returns the histories by name and the
    best learning rate of each tuned optimiser.
    """
    if not etas or not ms:
        raise ValueError(f"need at least one target step and one m; got etas={list(etas)}, ms={list(ms)}")
    runs, best_lr, k = {}, {}, table.n_classes  # softmax regression with one logit per class
    for name, optimizer in PEERS.items() if peers else [("SGD", torch.optim.SGD)]:
        best_lr[name], runs[name], _ = tuned(table, optimizer, grid, oracle_calls, batch_size, seed, k=k)
    grow = 2.0 ** (batch_size / len(table))
    sls = lambda model, counts: sso.sls_step(model, "softmax_ce", counts, init_step=1.0, grow=grow)
    runs["SLS"] = run(table, sls, oracle_calls, batch_size, seed, k=k)
    jobs = [(eta, m) for eta in etas for m in ms]
    for eta, m in runtime.progress(jobs, desc=desc, disable=desc is None):
        name = f"SSO m={m}" if eta == "armijo" else f"SSO m={m}, η={eta:g}"
        runs[name] = run(table, surrogate_maker(m, eta=eta), oracle_calls, batch_size, seed, k=k)
    return runs, best_lr


def largest_rise(losses: Sequence[float]) -> float:
    """The largest relative increase ``(l[t+1] - l[t]) / l[t]`` of a loss sequence (negative: it always fell)."""
    values = torch.tensor(losses, dtype=torch.float64)
    if len(values) < 2:
        raise ValueError("need at least two losses")
    return float((values.diff() / values[:-1]).max())


def mm_run(table: Table, loss: str, eta: float, steps: int, seed: int, m: int = 20) -> dict[str, list[float]]:
    r"""Full-batch majorisation-minimisation (Armijo inner loop, ``m`` steps) for ``steps`` outer steps.

    Returns the mean ``loss`` before the first step and after each, and ``sandwich``, the left half
    of the MM inequality after each step, :math:`g_t(\theta_{t+1})-\ell(f(\theta_{t+1}))` (summed
    over the table): non-negative whenever the surrogate bounds the loss at the point the inner
    loop reached. One logit for ``"logistic"``, ``table.n_classes`` for ``"softmax_ce"``.
    """
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    k = 1 if loss == "logistic" else table.n_classes
    model = linear_model(table.n_features, k, seed, table.x.device)
    opt = sso.TargetSurrogate(model, loss, eta=eta, m=m)
    ell = sso.target_loss(loss)
    out: dict[str, list[float]] = {"loss": [sso.mean_loss(model, table.x, table.y, loss)], "sandwich": []}
    for _ in range(steps):
        opt.step(table.x, table.y)
        with torch.no_grad():
            new = float(ell.value(model(table.x), table.y))  # bookkeeping: not counted
        out["sandwich"].append(opt.last["surrogate_end"] - new)
        out["loss"].append(new / len(table))
    return out


def inner_solvers(
    table: Table, m: int, outer_steps: int, batch_size: int, seed: int, solvers: Sequence[str] = ("armijo", "lbfgs")
) -> dict[str, dict[str, float]]:
    """SSO-SLS on ``table`` with each inner solver: final loss, mean surrogate decrease per outer step, seconds, counts.

    Batches are drawn with replacement, the same for every solver.
    """
    out = {}
    for name in solvers:
        model, counts = linear_model(table.n_features, table.n_classes, seed, table.x.device), sso.Counts()
        opt = sso.TargetSurrogate(model, "softmax_ce", eta="armijo", inner=name, m=m, counts=counts)
        generator, drop, seconds = torch.Generator().manual_seed(seed), 0.0, 0.0
        for _ in range(outer_steps):
            idx = runtime.randint(0, len(table), (batch_size,), generator=generator, device=table.x.device)
            start = sso.clock(table.x.device)
            opt.step(table.x[idx], table.y[idx])
            seconds += sso.clock(table.x.device) - start
            drop += opt.last["loss"] - opt.last["surrogate_end"]
        final = sso.mean_loss(model, table.x, table.y, "softmax_ce")
        out[name] = dict(final_loss=final, surrogate_drop=drop / outer_steps, seconds=seconds, **counts.as_dict())
    return out


def dagger_runs(
    env: imitation.DoubleIntegrator,
    grid: Sequence[float],
    ms: Sequence[int],
    rounds: int,
    seed: int,
    device=None,
    control_eta: float | None = None,
    **dagger_kw,
) -> tuple[dict[str, History], float, float]:
    r"""DAgger with OGD (tuned on ``grid`` for the final return), SSO with each ``m`` (the table's
    :math:`\eta=1`, Armijo inner loop) and SSO-SLS with the largest ``m``.

    Each run starts from the zero linear policy. Returns the histories by name, the final return
    of the control and the expert's return on the same evaluation roll-outs. The control is SSO
    with the largest ``m`` and the oracle's sign flipped, or, with ``control_eta``, SSO with that
    constant target step instead of the squared loss's :math:`\eta=1` (the logistic's 4 or an
    in-between 2.5: the projection then overshoots, :math:`z-a^\star` times :math:`1-\eta`).
    """

    if not ms:
        raise ValueError("ms is empty: give at least one number of inner steps")

    def one(make: Maker) -> History:
        runtime.seed_all(seed)
        policy = nn.Linear(2, 1, bias=False).to(device, torch.float64)
        nn.init.zeros_(policy.weight)
        step, generator = make(policy, sso.Counts()), torch.Generator().manual_seed(seed)
        return imitation.dagger(step, policy, env, rounds, generator=generator, device=device, **dagger_kw)

    ogd: dict[float, History] = {}
    for lr in grid:
        try:
            ogd[lr] = one(optimiser_maker(lr, "squared"))
        except FloatingPointError:  # this learning rate diverged
            continue
    finite = {lr: h for lr, h in ogd.items() if math.isfinite(h.last("return"))}
    if not finite:
        raise FloatingPointError("OGD diverged at every learning rate of the grid")
    best = max(finite, key=lambda lr: finite[lr].last("return"))
    runs = {f"OGD, lr = {best:g}": finite[best]}
    for m in ms:
        runs[f"SSO m={m}"] = one(surrogate_maker(m, "squared"))
    runs[f"SSO-SLS m={ms[-1]}"] = one(surrogate_maker(ms[-1], "squared", eta="armijo"))
    wrong = {"oracle_sign": -1.0} if control_eta is None else {"eta": control_eta}
    try:
        control = one(surrogate_maker(ms[-1], "squared", **wrong)).last("return")
    except FloatingPointError:  # the control diverged: its return is minus infinity
        control = -math.inf
    n_envs, horizon = dagger_kw.get("n_envs", 256), dagger_kw.get("horizon", 50)
    evaluation = torch.Generator().manual_seed(dagger_kw.get("eval_seed", 12345))
    _, expert = env.rollout(env.expert(device), n_envs, horizon, evaluation, device)
    return runs, control, float(expert.mean())


__all__ = [
    "PEERS",
    "Maker",
    "compare",
    "dagger_runs",
    "inner_solvers",
    "largest_rise",
    "linear_model",
    "mm_run",
    "mlp_model",
    "optimiser_maker",
    "run",
    "surrogate_maker",
    "tuned",
]
