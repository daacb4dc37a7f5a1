r"""Gaussian-mixture data laws, whose noised marginals, scores and denoisers are exact.

If :math:`x_0 \sim \sum_k w_k\,\mathcal N(\mu_k, \Sigma_k)` and :math:`x_t = \alpha_t x_0 + \sigma_t\epsilon`, then

.. math::
    p_t(x) = \sum_k w_k\,\mathcal N(x;\ \alpha_t\mu_k,\ C_k), \quad C_k = \alpha_t^2\Sigma_k + \sigma_t^2 I, \qquad
    \mathbb E[x_0 \mid x_t = x] = \sum_k r_k(x)\,\big(\mu_k + \alpha_t\Sigma_k C_k^{-1}(x - \alpha_t\mu_k)\big),

with responsibilities :math:`r_k(x) \propto w_k\,\mathcal N(x; \alpha_t\mu_k, C_k)`. Samplers can therefore be
tested with no training at all :cite:`lai2025principles`.
"""

from __future__ import annotations

import math

import torch

from ..runtime import multinomial, randn
from .field import Field
from .schedules import Schedule, as_time


def component_terms(x: torch.Tensor, log_w: torch.Tensor, means: torch.Tensor, covs: torch.Tensor):
    r"""For a mixture :math:`\sum_k w_k\mathcal N(m_k, C_k)` at points ``x (B, d)``: the joint log-densities
    :math:`\log w_k + \log\mathcal N(x; m_k, C_k)` ``(B, K)`` and the solves :math:`C_k^{-1}(x - m_k)` ``(B, K, d)``.

    ``means`` is ``(K, d)`` or per point ``(B, K, d)``; ``covs`` is ``(K, d, d)`` or ``(B, K, d, d)``.
    """
    chol = torch.linalg.cholesky(covs)
    diff = x[:, None, :] - means
    if covs.dim() == 3:  # shared by all points: invert K small matrices once, then one batched product
        sol = torch.einsum("kij,bkj->bki", torch.cholesky_inverse(chol), diff)
    else:
        sol = torch.cholesky_solve(diff.unsqueeze(-1), chol).squeeze(-1)
    half_logdet = torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
    log_comp = log_w - 0.5 * (diff * sol).sum(-1) - half_logdet - 0.5 * x.shape[1] * math.log(2 * math.pi)
    return log_comp, sol


def responsibilities(log_comp: torch.Tensor) -> torch.Tensor:
    """Softmax over components (the last axis), computed along the batch axis, which is much faster for few components."""
    return torch.softmax(log_comp.transpose(0, -1), 0).transpose(0, -1)


class GaussianMixture:
    """A mixture of ``K`` Gaussians in ``d`` dimensions: ``weights (K,)``, ``means (K, d)``, ``covs (K, d, d)``."""

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, covs: torch.Tensor):
        weights, means, covs = (torch.as_tensor(v, dtype=torch.float64) for v in (weights, means, covs))
        if means.dim() != 2:
            raise ValueError(f"means must have shape (K, d), got {tuple(means.shape)}")
        k, d = means.shape
        if weights.shape != (k,) or covs.shape != (k, d, d):
            raise ValueError(
                f"weights must be ({k},) and covs ({k}, {d}, {d}); got {tuple(weights.shape)}, {tuple(covs.shape)}"
            )
        if (weights <= 0).any():
            raise ValueError("mixture weights must be positive")
        if not torch.allclose(covs, covs.transpose(-1, -2)):
            raise ValueError("covariances must be symmetric")
        self.chol = torch.linalg.cholesky(covs)  # raises on a covariance that is not positive definite
        self.weights, self.means, self.covs = weights / weights.sum(), means, covs
        self.n_components, self.dim = k, d

    @classmethod
    def ring(cls, n_components: int = 8, radius: float = 2.0, std: float = 0.2, dim: int = 2) -> GaussianMixture:
        """Equal-weight isotropic components on a circle in the first two coordinates."""
        if dim < 2:
            raise ValueError("a ring needs at least 2 dimensions")
        angle = torch.arange(n_components, dtype=torch.float64) * 2 * math.pi / n_components
        means = torch.zeros(n_components, dim, dtype=torch.float64)
        means[:, 0], means[:, 1] = radius * torch.cos(angle), radius * torch.sin(angle)
        covs = std**2 * torch.eye(dim, dtype=torch.float64).expand(n_components, dim, dim).clone()
        return cls(torch.ones(n_components), means, covs)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws from the data law, float64, shape ``(n, d)``."""
        k = multinomial(self.weights, n, replacement=True, generator=generator)
        z = randn(n, self.dim, 1, generator=generator, dtype=torch.float64)
        return self.means[k] + (self.chol[k] @ z).squeeze(-1)

    @classmethod
    def fit(cls, x: torch.Tensor, n_components: int, reg_covar: float = 1e-2, seed: int = 0) -> GaussianMixture:
        """A full-covariance mixture fitted to the rows of ``x`` by EM (scikit-learn), with ``reg_covar`` added to each covariance."""
        from sklearn.mixture import GaussianMixture as SkGMM

        if x.dim() != 2 or x.shape[0] < n_components:
            raise ValueError(f"need at least {n_components} rows of shape (N, d), got {tuple(x.shape)}")
        sk = SkGMM(n_components, covariance_type="full", reg_covar=reg_covar, random_state=seed).fit(
            x.double().cpu().numpy()
        )
        return cls(torch.as_tensor(sk.weights_), torch.as_tensor(sk.means_), torch.as_tensor(sk.covariances_))

    def posterior_mean(self, H: torch.Tensor, y: torch.Tensor, noise_std: float) -> torch.Tensor:
        r""":math:`\mathbb E[x \mid y]` for :math:`y = Hx + \sigma v`, :math:`v \sim \mathcal N(0, I)`, row by row of ``y (B, m)``.

        The posterior is again a mixture: component :math:`k` is updated by the Kalman gain
        :math:`K_k = \Sigma_kH^\top(H\Sigma_kH^\top + \sigma^2I)^{-1}` and reweighted by
        :math:`\pi_k\,\mathcal N(y; H\mu_k, H\Sigma_kH^\top + \sigma^2I)`.
        """
        H = torch.as_tensor(H, dtype=torch.float64)
        if H.dim() != 2 or H.shape[1] != self.dim or y.dim() != 2 or y.shape[1] != H.shape[0]:
            shapes = f"{tuple(H.shape)}, {tuple(y.shape)}"
            raise ValueError(f"need H of shape (m, {self.dim}) and y of shape (batch, m), got {shapes}")
        if noise_std <= 0:
            raise ValueError(f"noise_std must be positive, got {noise_std}")
        y = y.double()
        sht = self.covs @ H.T  # (K, d, m)
        innov = H @ sht + noise_std**2 * torch.eye(H.shape[0], dtype=torch.float64)  # (K, m, m)
        log_comp, sol = component_terms(y, torch.log(self.weights), self.means @ H.T, innov)
        means = self.means + torch.einsum("kdm,bkm->bkd", sht, sol)  # (B, K, d)
        return torch.einsum("bk,bkd->bd", responsibilities(log_comp), means)

    def field(self, schedule: Schedule) -> GaussianMixtureField:
        """The exact denoiser of this law on ``schedule``."""
        return GaussianMixtureField(self, schedule)

    def noised(self, schedule: Schedule, t) -> GaussianMixture:
        r"""The marginal :math:`p_t` at a scalar time ``t``, itself a Gaussian mixture."""
        t = as_time(t)
        if t.dim() != 0:
            raise ValueError("noised() takes a scalar time")
        a, s = schedule.alpha(t), schedule.sigma(t)
        eye = torch.eye(self.dim, dtype=torch.float64)
        return GaussianMixture(self.weights, a * self.means, a**2 * self.covs + s**2 * eye)


class GaussianMixtureField(Field):
    """Exact :math:`\\log p_t`, score and :math:`\\mathbb E[x_0 \\mid x_t]` of a :class:`GaussianMixture` under a schedule."""

    kind = "x0"

    def __init__(self, mixture: GaussianMixture, schedule: Schedule):
        self.mixture, self.schedule = mixture, schedule

    def _parts(self, x: torch.Tensor, t):
        if x.dim() != 2 or x.shape[1] != self.mixture.dim:
            raise ValueError(f"x must have shape (batch, {self.mixture.dim}), got {tuple(x.shape)}")
        m = self.mixture
        t = as_time(t, x)
        a, s = self.schedule.alpha(t), self.schedule.sigma(t)
        if t.dim() == 1:  # one time per sample: (B, 1, 1, 1) against (K, d, d)
            a, s = a.reshape(-1, 1, 1, 1), s.reshape(-1, 1, 1, 1)
        means, covs = m.means.to(x), m.covs.to(x)
        eye = torch.eye(m.dim, dtype=x.dtype, device=x.device)
        a_vec = a.reshape(-1, 1, 1) if t.dim() == 1 else a
        log_comp, sol = component_terms(x, torch.log(m.weights.to(x)), a_vec * means, a**2 * covs + s**2 * eye)
        return a_vec, means, covs, sol, log_comp

    def log_prob(self, x: torch.Tensor, t) -> torch.Tensor:
        r""":math:`\log p_t(x)`, shape ``(batch,)``."""
        *_, log_comp = self._parts(x, t)
        return torch.logsumexp(log_comp, -1)

    def score(self, x, t):
        _, _, _, sol, log_comp = self._parts(x, t)
        return -torch.einsum("bk,bkd->bd", responsibilities(log_comp), sol)

    def predict(self, x, t):
        a, means, covs, sol, log_comp = self._parts(x, t)
        r = responsibilities(log_comp)  # r_k(x), the posterior weights of the components
        # E[x0 | x_t] = sum_k r_k (mu_k + alpha Sigma_k C_k^{-1} (x - alpha mu_k)),
        # with sol = C_k^{-1} (x - alpha mu_k)
        return r @ means + a.reshape(-1, 1) * torch.einsum("kij,bkj->bi", covs, r.unsqueeze(-1) * sol)
