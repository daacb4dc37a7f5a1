r"""Small models for variational inference: the cone model with its exact evidence, guides, and VAEs.

The cone model :cite:`becker2024probabilistic` (Table 4): :math:`x,y\sim\mathcal N(0,10^2)`,
:math:`z\sim\mathcal N\big(x^2+y^2,\,(0.1+(x^2+y^2)/100)^2\big)`, observed :math:`z=5`. Since
:math:`s=x^2+y^2\sim\mathrm{Exp}(\text{mean }200)`, the evidence is a one-dimensional integral.
"""

from __future__ import annotations

import math

import torch
from torch import distributions as D
from torch import nn
from torch.nn import functional as F

from ..nn import MLP
from ..runtime import randn_like

PRIOR_STD = 10.0


def cone_noise_std(s: torch.Tensor) -> torch.Tensor:
    return 0.1 + s / 100.0


def cone_log_joint(xy: torch.Tensor, z_obs: float = 5.0, prior_std: float = PRIOR_STD) -> torch.Tensor:
    """:math:`\\log p(x, y, z_{obs})` for points ``xy`` of shape ``(..., 2)``.

    ``prior_std`` is the standard deviation of :math:`x` and :math:`y` (another value is a wrong
    model, for negative controls: e.g. ``PRIOR_STD**2``, the variance passed as the scale).
    """
    if xy.shape[-1] != 2:
        raise ValueError(f"the cone model's latent has 2 coordinates, got shape {tuple(xy.shape)}")
    prior = D.Normal(torch.zeros((), dtype=xy.dtype), prior_std).log_prob(xy).sum(-1)
    s = (xy**2).sum(-1)
    return prior + D.Normal(s, cone_noise_std(s)).log_prob(torch.as_tensor(z_obs, dtype=xy.dtype))


def cone_log_evidence(z_obs: float = 5.0, n_grid: int = 400_001, s_max: float | None = None) -> float:
    """:math:`\\log p(z_{obs})=\\log\\int_0^\\infty \\frac{1}{200}e^{-s/200}\\,\\mathcal N(z_{obs};s,\\sigma(s))\\,ds` by the trapezoid rule (float64)."""
    s_max = s_max or max(50.0, 20 * z_obs)
    s = torch.linspace(0.0, s_max, n_grid, dtype=torch.float64)
    density = torch.exp(-s / 200.0) / 200.0 * D.Normal(s, cone_noise_std(s)).log_prob(torch.tensor(z_obs)).exp()
    tail = math.exp(-s_max / 200.0) * D.Normal(s_max, 0.1 + s_max / 100).log_prob(torch.tensor(z_obs)).exp().item()
    if tail > 1e-12:
        raise ValueError(f"the quadrature range [0, {s_max}] is too short for z_obs = {z_obs}")
    return float(torch.trapezoid(density, s).log())


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    r""":math:`\sum_d \log\mathrm{Bern}(x_d;\sigma(\ell_d))` for logits ``(..., B, D)`` and binary images ``x`` ``(B, D)``."""
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)


class MeanFieldNormal(nn.Module):
    """:math:`q(z)=\\mathcal N(\\mu,\\mathrm{diag}\\,\\sigma^2)` with parameters :math:`(\\mu,\\log\\sigma)`."""

    def __init__(self, mu, log_sigma, dtype=torch.float64):
        super().__init__()
        self.mu = nn.Parameter(torch.as_tensor(mu, dtype=dtype).clone())
        self.log_sigma = nn.Parameter(torch.as_tensor(log_sigma, dtype=dtype).clone())

    def forward(self) -> D.Distribution:
        return D.Independent(D.Normal(self.mu, self.log_sigma.exp()), 1)


class ConeRingFamily(nn.Module):
    r"""The hierarchical family of the cone experiment: :math:`u\sim U(0,1)`, :math:`\vartheta=2\pi u`,
    :math:`(x,y)\sim\mathcal N\big(\sqrt{z_{obs}}(\cos\vartheta,\sin\vartheta),\ \mathrm{diag}\,\sigma^2\big)`.
    """

    def __init__(self, z_obs: float = 5.0, log_sigma=(0.0, 0.0), dtype=torch.float64):
        super().__init__()
        self.radius = math.sqrt(z_obs)
        self.log_sigma = nn.Parameter(torch.as_tensor(log_sigma, dtype=dtype).clone())

    def prior_u(self) -> D.Distribution:
        """:math:`q(u)=U(0,1)`, with one independent copy per leading dimension of ``log_sigma`` (stacked models)."""
        zero = torch.zeros(self.log_sigma.shape[:-1], dtype=self.log_sigma.dtype)
        return D.Uniform(zero, zero + 1)

    def conditional(self, u: torch.Tensor) -> D.Distribution:
        angle = 2 * math.pi * u
        loc = self.radius * torch.stack([angle.cos(), angle.sin()], -1)
        return D.Independent(D.Normal(loc, self.log_sigma.exp().expand(loc.shape)), 1)


class BernoulliVAE(nn.Module):
    """A VAE with ``n_latent`` Bernoulli latents (uniform prior) and a Bernoulli decoder, for binarised images."""

    def __init__(self, d_x: int, n_latent: int = 8, hidden: int = 64):
        super().__init__()
        self.encoder = MLP(d_x, [hidden], n_latent, activation=nn.Tanh)
        self.decoder = MLP(n_latent, [hidden], d_x, activation=nn.Tanh)
        self.n_latent = n_latent

    def guide(self, x: torch.Tensor) -> D.Distribution:
        return D.Independent(D.Bernoulli(logits=self.encoder(x), validate_args=False), 1)

    def log_joint(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(x\mid z)+\log p(z)` for latents ``z`` of shape ``(..., B, L)`` and images ``x`` ``(B, D)``."""
        return bernoulli_log_likelihood(self.decoder(z), x) - self.n_latent * math.log(2.0)

    def exact_elbo(self, x: torch.Tensor) -> torch.Tensor:
        """The ELBO of each image, exactly, by summing over the :math:`2^L` latent states."""
        from ..estimators.bernoulli import enumerate_binary

        states = enumerate_binary(self.n_latent, x.dtype, x.device)[:, None, :].expand(-1, x.shape[0], -1)
        q = self.guide(x)
        log_q = q.log_prob(states)
        return (log_q.exp() * (self.log_joint(states, x) - log_q)).sum(0)


class GaussianVAE(nn.Module):
    """The VAE of the paper's overhead benchmark: encoder 784-200-(2 x 10), decoder 10-200-784, Bernoulli likelihood."""

    def __init__(self, d_x: int = 784, hidden: int = 200, n_latent: int = 10):
        super().__init__()
        self.encoder = MLP(d_x, [hidden], 2 * n_latent)
        self.decoder = MLP(n_latent, [hidden], d_x)
        self.n_latent = n_latent

    def guide(self, x: torch.Tensor) -> D.Distribution:
        mu, log_sigma = self.encoder(x).chunk(2, -1)
        return D.Independent(D.Normal(mu, log_sigma.exp(), validate_args=False), 1)

    def log_joint(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(x\mid z)+\log\mathcal N(z;0,I)` for ``z`` of shape ``(..., B, L)`` and ``x`` ``(B, D)``."""
        log_prior = (-0.5 * z**2).sum(-1) - 0.5 * self.n_latent * math.log(2 * math.pi)
        return bernoulli_log_likelihood(self.decoder(z), x) + log_prior

    def handwritten_elbo(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The same single-sample reparameterised ELBO estimate, written by hand (the overhead baseline)."""
        mu, log_sigma = self.encoder(x).chunk(2, -1)
        eps = randn_like(mu, generator)
        z = mu + log_sigma.exp() * eps
        log_q = (-0.5 * eps**2 - log_sigma).sum(-1) - 0.5 * self.n_latent * math.log(2 * math.pi)
        log_prior = (-0.5 * z**2).sum(-1) - 0.5 * self.n_latent * math.log(2 * math.pi)
        logits = self.decoder(z)
        log_lik = -nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        return log_lik + log_prior - log_q
