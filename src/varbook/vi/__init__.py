"""Variational inference: programmable objectives and their gradient estimators, and small models."""

from . import models, objectives, programmable
from .objectives import elbo, iwelbo, log_mean_exp, marginal_sir, vimco
from .programmable import STRATEGIES, Strategy, Tracer, estimate, maximise, reinforce

__all__ = [
    "models",
    "objectives",
    "programmable",
    "elbo",
    "iwelbo",
    "log_mean_exp",
    "marginal_sir",
    "vimco",
    "STRATEGIES",
    "Strategy",
    "Tracer",
    "estimate",
    "maximise",
    "reinforce",
]
