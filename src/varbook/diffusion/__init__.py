r"""Diffusion and flow models: forward processes, parameterisations, losses, samplers, guidance, metrics.

**Time convention: data to noise.** :math:`t \in [0, 1]`, data at :math:`t = 0`, noise at :math:`t = 1`
(:mod:`~varbook.diffusion.schedules`, checked by :func:`~varbook.diffusion.schedules.as_time`); samplers
run on decreasing grids, from noise to data. The one exception is :mod:`~varbook.diffusion.interpolants`,
which keeps the paper's base-to-target time (:math:`t = 0` the Gaussian base, :math:`t = 1` the data);
:meth:`Interpolant.as_schedule <varbook.diffusion.interpolants.Interpolant.as_schedule>` is the one adapter
between the two, reading the one-sided linear interpolant at :math:`t` as the
:class:`~varbook.diffusion.schedules.Linear` schedule at :math:`s = 1 - t`.
"""

from .field import Denoiser, Field
from .flowmaps import meanflow_loss, sample_meanflow
from .gmm import GaussianMixture, GaussianMixtureField
from .guidance import GuidedField, guide
from .interpolants import Interpolant, InterpolantMixtureField, interpolant_losses
from .losses import denoising_loss
from .metrics import energy_distance, frechet_distance, gaussian_fit, mmd, sliced_wasserstein
from .param import KINDS, convert, from_eps, to_eps, tweedie
from .samplers import (
    SAMPLERS,
    nfe,
    posterior,
    prior,
    sample,
    sample_ddim,
    sample_ddim_as_euler,
    sample_ddpm,
    sample_dpm_solver_2,
    sample_euler,
    sample_heun,
    sample_reverse_sde,
    steps_for_nfe,
)
from .schedules import VE, DiscreteVP, Linear, Schedule, VPCosine, VPLinear, ddpm_alpha_bar, time_grid

__all__ = [
    "Schedule", "DiscreteVP", "VPLinear", "VPCosine", "VE", "Linear", "ddpm_alpha_bar", "time_grid",
    "KINDS", "convert", "to_eps", "from_eps", "tweedie",
    "Field", "Denoiser", "GaussianMixture", "GaussianMixtureField",
    "denoising_loss", "guide", "Interpolant", "InterpolantMixtureField", "interpolant_losses", "GuidedField", "meanflow_loss", "sample_meanflow",
    "SAMPLERS", "sample", "nfe", "steps_for_nfe", "prior", "posterior",
    "sample_ddpm", "sample_ddim", "sample_ddim_as_euler", "sample_euler", "sample_heun",
    "sample_dpm_solver_2", "sample_reverse_sde",
    "energy_distance", "mmd", "sliced_wasserstein", "frechet_distance", "gaussian_fit",
]  # fmt: skip
