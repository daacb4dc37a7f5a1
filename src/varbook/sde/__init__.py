"""Stochastic and ordinary differential equation solvers shared by the diffusion and SDE chapters."""

from .likelihood import augmented_drift, divergence, ode_log_likelihood
from .solvers import euler, euler_maruyama, heun, stochastic_heun

__all__ = ["euler", "heun", "euler_maruyama", "stochastic_heun", "augmented_drift", "divergence", "ode_log_likelihood"]
