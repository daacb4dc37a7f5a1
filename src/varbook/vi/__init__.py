"""Variational inference: programmable objectives and their gradient estimators, and small models.

:mod:`.benchmarks` holds the experiments of the programmable-VI chapter; :mod:`.pyro_peer` (which
needs Pyro, so it is not imported here) the same models written in Pyro.
"""

from . import benchmarks, models, objectives, programmable
from .objectives import elbo, iwelbo, log_mean_exp, marginal_sir, vimco
from .programmable import STRATEGIES, Strategy, Tracer, estimate, maximise, reinforce

__all__ = [
    "benchmarks",
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
