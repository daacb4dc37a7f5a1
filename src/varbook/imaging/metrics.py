"""Peak signal-to-noise ratio and structural similarity, per image."""

from __future__ import annotations

import math

import torch


def psnr(x: torch.Tensor, ref: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    r"""PSNR in dB per image, :math:`10\log_{10}(R^2/\mathrm{MSE})`; ``data_range`` :math:`R` is 2 for images in [-1, 1]."""
    if x.shape != ref.shape:
        raise ValueError(f"images and references differ in shape: {tuple(x.shape)} and {tuple(ref.shape)}")
    mse = ((x - ref) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse.clamp(min=1e-20))


def ssim(
    x: torch.Tensor, ref: torch.Tensor, data_range: float = 2.0, sigma: float = 1.5, window: int = 7
) -> torch.Tensor:
    r"""Structural similarity per image with a Gaussian window :cite:`wang2004image`, images ``(batch, side * side)``.

    Local means, variances and covariance use a normalised Gaussian window (reflect padding), with the
    usual constants :math:`C_1 = (0.01R)^2`, :math:`C_2 = (0.03R)^2`; the map is averaged over pixels.
    """
    if x.shape != ref.shape or x.dim() != 2:
        raise ValueError(
            f"need two (batch, side*side) image sets of one shape, got {tuple(x.shape)} and {tuple(ref.shape)}"
        )
    side = math.isqrt(x.shape[1])
    if side * side != x.shape[1]:
        raise ValueError("images must be square")
    window = min(window, side - (1 - side % 2))
    half = window // 2
    g = torch.exp(-((torch.arange(window, dtype=x.dtype, device=x.device) - half) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :])[None, None]

    def blur(z):
        z = torch.nn.functional.pad(z.reshape(-1, 1, side, side), (half,) * 4, mode="reflect")
        return torch.nn.functional.conv2d(z, kernel)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(ref)
    vx, vy, cxy = blur(x * x) - mx**2, blur(ref * ref) - my**2, blur(x * ref) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def quality(x: torch.Tensor, ref: torch.Tensor, data_range: float = 2.0) -> dict[str, float]:
    """Mean :func:`psnr` (dB) and mean :func:`ssim` of images ``x (batch, side * side)`` against ``ref``."""
    return {"PSNR": float(psnr(x, ref, data_range).mean()), "SSIM": float(ssim(x, ref, data_range).mean())}
