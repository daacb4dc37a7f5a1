r"""The reparameterisation trick :cite:`kingma2014auto`: :math:`z=\mu+\sigma\epsilon`, :math:`\epsilon\sim\mathcal N(0,I)`."""

from __future__ import annotations

import torch

from ..runtime import randn_like


def reparameterize(mu: torch.Tensor, log_var: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A sample of :math:`\\mathcal N(\\mu,\\mathrm{diag}\\,e^{\\log\\sigma^2})` that is differentiable in ``mu`` and ``log_var``."""
    if mu.shape != log_var.shape:
        raise ValueError(f"mu and log_var must have the same shape, got {tuple(mu.shape)} and {tuple(log_var.shape)}")
    eps = randn_like(mu, generator)
    return mu + (0.5 * log_var).exp() * eps
