r"""A Gaussian latent-sequence cell: a prior net on the recurrent state, a posterior from free
"adaptive vectors", a reparameterised sample and the per-step KL :cite:`ahmadi2019novel`.

.. math:: p(z_t\mid d_{t-1})=\mathcal N\big(\tanh(W_\mu d_{t-1}),\ \exp(W_\sigma d_{t-1})^2\big),\qquad
   q(z_t)=\mathcal N\big(\tanh A^\mu_t,\ \exp(A^\sigma_t)^2\big),

with :math:`p(z_1)=\mathcal N(0,I)` and the log-standard deviations clamped to
:data:`LOG_SIGMA_RANGE`. The KL is :func:`varbook.vi.kl.gaussian_kl` (log-variance
:math:`2\log\sigma`). Weights carry a leading dimension of models, as in :mod:`varbook.nn.mtrnn`.
"""

from __future__ import annotations

import torch
from torch import nn

from varbook import runtime
from varbook.nn.mtrnn import batched_linear, init_weight
from varbook.vi.kl import gaussian_kl

LOG_SIGMA_RANGE = (-6.0, 2.0)
"""Clamp of the pre-activation of :math:`\\log\\sigma` in prior and posterior (the exponential can explode)."""


def gaussian_from(pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean :math:`\\tanh a^\\mu` and log-std (clamped) from pre-activations ``pre = [a^mu, a^sigma]``.

    >>> mu, log_sigma = gaussian_from(torch.tensor([0.0, 9.0]))
    >>> mu, log_sigma
    (tensor([0.]), tensor([2.]))
    """
    if pre.shape[-1] % 2:
        raise ValueError(f"pre-activations need an even last dimension [mu, sigma], got {pre.shape[-1]}")
    a_mu, a_sigma = pre.chunk(2, dim=-1)
    return torch.tanh(a_mu), a_sigma.clamp(*LOG_SIGMA_RANGE)


def step_kl(mu_q: torch.Tensor, log_sigma_q: torch.Tensor, mu_p: torch.Tensor, log_sigma_p: torch.Tensor):
    r""":math:`\mathrm{KL}[q\,\|\,p]=\sum_j\log\frac{\sigma_p}{\sigma_q}+\frac{\sigma_q^2+(\mu_q-\mu_p)^2}{2\sigma_p^2}-\frac12`,
    summed over the last dimension (through :func:`varbook.vi.kl.gaussian_kl`)."""
    return gaussian_kl(mu_q, 2 * log_sigma_q, mu_p, 2 * log_sigma_p)


def sample(
    mu: torch.Tensor,
    log_sigma: torch.Tensor,
    generator: torch.Generator | None = None,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reparameterised draw :math:`z=\\mu+\\sigma\\varepsilon`, :math:`\\varepsilon\\sim\\mathcal N(0,I)`.

    ``groups`` (optional, ``(M,)`` integers ``0..G-1`` along the leading dimension of models) makes
    the models of one group share the same :math:`\\varepsilon` ("the same seed"); by default every
    entry gets its own draw.

    >>> e = sample(torch.zeros(3, 4), torch.zeros(3, 4), groups=torch.tensor([0, 0, 1]))
    >>> bool((e[0] == e[1]).all()), bool((e[0] == e[2]).all())
    (True, False)
    """
    if groups is None:
        eps = runtime.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    else:
        if groups.shape != mu.shape[:1] or groups.is_floating_point() or bool((groups < 0).any()):
            raise ValueError(f"groups must be integers >= 0 of shape {tuple(mu.shape[:1])}, got {groups}")
        shape = (int(groups.max()) + 1, *mu.shape[1:])
        eps = runtime.randn(shape, generator=generator, device=mu.device, dtype=mu.dtype)[groups.to(mu.device)]
    return mu + log_sigma.exp() * eps


class LatentCell(nn.Module):
    r"""The prior net of one latent layer: :math:`[W_\mu d, W_\sigma d]` as pre-activations.

    The posterior lives outside the cell (adaptive vectors, or an encoder in a VRNN); the cell gives
    the prior at every step and the KL of any posterior against it.

    >>> cell = LatentCell(hidden=4, z_dim=2, n_models=3)
    >>> mu, log_sigma = cell.prior(torch.zeros(3, 5, 4))
    >>> mu.shape, bool((mu == 0).all()), bool((log_sigma == 0).all())
    (torch.Size([3, 5, 2]), True, True)
    """

    def __init__(self, hidden: int, z_dim: int, n_models: int = 1) -> None:
        super().__init__()
        if hidden < 1 or z_dim < 1 or n_models < 1:
            raise ValueError(f"LatentCell needs positive sizes, got hidden={hidden}, z_dim={z_dim}, "
                             f"n_models={n_models}")  # fmt: skip
        self.z_dim = z_dim
        self.weight = init_weight(n_models, 2 * z_dim, hidden)

    def prior_pre(self, d_prev: torch.Tensor) -> torch.Tensor:
        """Pre-activations :math:`[W_\\mu d_{t-1}, W_\\sigma d_{t-1}]`, shape ``(M, B, 2 z_dim)``."""
        return batched_linear(d_prev, self.weight)

    def prior(self, d_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prior mean and log-std given the previous deterministic output."""
        return gaussian_from(self.prior_pre(d_prev))

    def kl(self, posterior_pre: torch.Tensor, d_prev: torch.Tensor | None) -> torch.Tensor:
        """Per-step KL of the posterior with pre-activations ``posterior_pre`` against the prior.

        ``d_prev=None`` means the first step, whose prior is :math:`\\mathcal N(0,I)`.
        """
        mu_q, ls_q = gaussian_from(posterior_pre)
        if d_prev is None:
            return step_kl(mu_q, ls_q, torch.zeros_like(mu_q), torch.zeros_like(ls_q))
        mu_p, ls_p = self.prior(d_prev)
        return step_kl(mu_q, ls_q, mu_p, ls_p)
