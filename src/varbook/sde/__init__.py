"""Stochastic and ordinary differential equation solvers shared by the diffusion and SDE chapters.

**Time convention: forward along the grid.** A path starts at ``ts[0]`` and ends at ``ts[-1]``; the
processes of :mod:`varbook.sde.fbm` run forward from :math:`t = 0` on increasing grids. The solvers of
:mod:`varbook.sde.solvers` follow whatever strictly monotone grid they are given: a decreasing grid
integrates backwards, with Brownian increments of variance :math:`|t_{n+1} - t_n|`, and no change of
time variable. That is how :mod:`varbook.diffusion` (data at :math:`t = 0`, noise at :math:`t = 1`) runs
its reverse-time SDE and probability-flow ODEs: it passes its own decreasing grid, and
:func:`varbook.diffusion.samplers.sample_reverse_sde` is the one adapter between the two families.
Drifts, diffusions and controls take ``(x, t)`` first (:mod:`varbook.protocols`).
"""

from .likelihood import augmented_drift, divergence, likelihood_errors, ode_log_likelihood, ode_log_likelihood_dopri5
from .solvers import euler, euler_maruyama, heun, stochastic_heun

__all__ = ["euler", "heun", "euler_maruyama", "stochastic_heun", "augmented_drift", "divergence", "ode_log_likelihood",
           "ode_log_likelihood_dopri5", "likelihood_errors"]  # fmt: skip
