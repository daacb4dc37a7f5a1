"""Optimisers: the family of the chapters on how parameters move.

* :mod:`varbook.optim.sso`: target-based surrogates (full-batch majorisation-minimisation and
  stochastic SSO) with their oracle counters, the baselines' steps and the training loop
  :func:`~varbook.optim.sso.train` :cite:`lavington2023target`;
* :mod:`varbook.optim.linesearch`: the Armijo line search (also the SLS baseline), a
  ``torch.optim.Optimizer``;
* :mod:`varbook.optim.imitation`: a vectorised double integrator with an LQR expert, and DAgger;
* :mod:`varbook.optim.schedules`: step-size schedules, plain callables ``t -> step size`` that
  learning-rate controllers can replace.

New optimisers join as ``torch.optim.Optimizer`` subclasses (stepped through
:func:`varbook.runtime.descend`), new step-size rules as :data:`~varbook.optim.schedules.Schedule`
callables.
"""

from __future__ import annotations

from .linesearch import Armijo, LineSearchStep
from .schedules import SCHEDULES, Schedule, schedule
from .sso import (
    INNER,
    LOSSES,
    Counts,
    Oracle,
    TargetLoss,
    TargetSurrogate,
    gradient_step,
    linear_projection_step,
    mean_loss,
    sls_step,
    surrogate,
    surrogate_gaps,
    target_armijo,
    target_loss,
    train,
    tune,
)

__all__ = [
    "INNER",
    "LOSSES",
    "SCHEDULES",
    "Armijo",
    "Counts",
    "LineSearchStep",
    "Oracle",
    "Schedule",
    "TargetLoss",
    "TargetSurrogate",
    "gradient_step",
    "linear_projection_step",
    "mean_loss",
    "schedule",
    "sls_step",
    "surrogate",
    "surrogate_gaps",
    "target_armijo",
    "target_loss",
    "train",
    "tune",
]
