r"""Sample-quality metrics that need no downloaded weights: energy distance, MMD, sliced Wasserstein, Fréchet distance."""

from __future__ import annotations

import torch

from ..runtime import randn


def _pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"need two (n, d) sample sets of the same dimension, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("need at least two samples in each set")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("samples contain NaN or infinite values")
    dtype = torch.promote_types(x.dtype, y.dtype)
    return x.to(dtype), y.to(x.device, dtype)


def _mean_off_diagonal(m: torch.Tensor) -> torch.Tensor:
    n = m.shape[0]
    return (m.sum() - m.diagonal().sum()) / (n * (n - 1))


def energy_distance(x: torch.Tensor, y: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    r"""Energy distance :cite:`szekely2013energy` :math:`2\mathbb E\|X - Y\| - \mathbb E\|X - X'\| - \mathbb E\|Y - Y'\|`.

    ``unbiased=True``: within-set terms leave out the diagonal (U-statistics), so the estimate is unbiased
    and can dip below 0 when the two laws are equal. ``unbiased=False``: the V-statistic, never negative,
    with a positive floor of order :math:`1/n` for equal laws (so ratios of two values mean something).
    """
    x, y = _pair(x, y)
    within = _mean_off_diagonal if unbiased else torch.mean
    return 2 * torch.cdist(x, y).mean() - within(torch.cdist(x, x)) - within(torch.cdist(y, y))


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidth: float = 1.0) -> torch.Tensor:
    r"""Unbiased squared maximum mean discrepancy with the kernel :math:`\exp(-\|a - b\|^2 / 2h^2)` :cite:`gretton2012kernel`."""
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    x, y = _pair(x, y)

    def k(a, b):
        return torch.exp(-(torch.cdist(a, b) ** 2) / (2 * bandwidth**2))

    return _mean_off_diagonal(k(x, x)) + _mean_off_diagonal(k(y, y)) - 2 * k(x, y).mean()


def sliced_wasserstein(
    x: torch.Tensor, y: torch.Tensor, n_projections: int = 128, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""Sliced 1-Wasserstein distance: the mean over random unit directions of the 1-D :math:`W_1` of the projections (equal sample sizes)."""
    x, y = _pair(x, y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"sliced Wasserstein here needs equal sample sizes, got {x.shape[0]} and {y.shape[0]}")
    theta = randn(x.shape[1], n_projections, generator=generator, dtype=x.dtype, device=x.device)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, _ = torch.sort(x @ theta, dim=0)
    py, _ = torch.sort(y @ theta, dim=0)
    return (px - py).abs().mean()


def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(m)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Fréchet distance between Gaussians fitted to two feature sets :cite:`heusel2017gans`.

    :math:`\|\mu_x - \mu_y\|^2 + \operatorname{tr}\big(\Sigma_x + \Sigma_y - 2(\Sigma_x^{1/2}\Sigma_y\Sigma_x^{1/2})^{1/2}\big)`, in float64.
    """
    x, y = _pair(x.double(), y.double())
    mx, my = x.mean(0), y.mean(0)
    cx, cy = torch.cov(x.T).reshape(x.shape[1], -1), torch.cov(y.T).reshape(y.shape[1], -1)
    root = _sqrtm_psd(cx)
    cross = _sqrtm_psd(root @ cy @ root)
    return (mx - my).pow(2).sum() + torch.trace(cx) + torch.trace(cy) - 2 * torch.trace(cross)


def gaussian_fit(x: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` draws from the Gaussian with the mean and covariance of ``x`` (the baseline a generative model must beat)."""
    x = x.double()
    chol = torch.linalg.cholesky(torch.cov(x.T).reshape(x.shape[1], -1) + 1e-9 * torch.eye(x.shape[1], dtype=x.dtype))
    return x.mean(0) + randn(n, x.shape[1], generator=generator, dtype=x.dtype, device=x.device) @ chol.T
