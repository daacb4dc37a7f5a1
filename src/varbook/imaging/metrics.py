r"""Peak signal-to-noise ratio and structural similarity, per image, as scikit-image defines them.

Images are batches of flat square grey images ``(batch, side * side)`` whose pixel values span ``value_range``
(the book's images span :math:`[-1, 1]`, the default). Both metrics first map that range to :math:`[0, 1]` and
use ``data_range=1``, the convention of the papers' tables (images in :math:`[0, 1]` or :math:`[0, 255]`):
``psnr(x, ref)`` and ``ssim(x, ref)`` equal scikit-image's
``peak_signal_noise_ratio((ref + 1) / 2, (x + 1) / 2, data_range=1)`` and
``structural_similarity((ref + 1) / 2, (x + 1) / 2, data_range=1)``. PSNR does not depend on where the range
sits, but SSIM does (its luminance term :math:`(2\mu_x\mu_y + C_1)/(\mu_x^2 + \mu_y^2 + C_1)` is not
shift-invariant): SSIM computed on :math:`[-1, 1]` images with ``data_range=2`` is a different number.
"""

from __future__ import annotations

import math

import torch

VALUE_RANGE = (-1.0, 1.0)  # the pixel range of the book's images


def _unit(x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Map images whose pixels span ``value_range`` to [0, 1] (in float64)."""
    lo, hi = value_range
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
    return (x.double() - lo) / (hi - lo)


def _pair(x: torch.Tensor, ref: torch.Tensor) -> int:
    """Check two ``(batch, side * side)`` image sets of one shape; return the side."""
    if x.shape != ref.shape or x.dim() != 2:
        raise ValueError(
            f"need two (batch, side*side) image sets of one shape, got {tuple(x.shape)} and {tuple(ref.shape)}"
        )
    side = math.isqrt(x.shape[1])
    if side * side != x.shape[1]:
        raise ValueError("images must be square")
    return side


def psnr(x: torch.Tensor, ref: torch.Tensor, value_range: tuple[float, float] = VALUE_RANGE) -> torch.Tensor:
    r"""PSNR in dB per image, :math:`10\log_{10}(1/\mathrm{MSE})` on images mapped to :math:`[0, 1]`
    (``skimage.metrics.peak_signal_noise_ratio`` with ``data_range=1``; for :math:`[-1, 1]` images this is
    :math:`10\log_{10}(4/\mathrm{MSE})` in their own units).

    The mean squared error is clamped at :math:`10^{-20}`, so identical images give 200 dB rather than infinity.
    """
    if x.shape != ref.shape:
        raise ValueError(f"images and references differ in shape: {tuple(x.shape)} and {tuple(ref.shape)}")
    mse = ((_unit(x, value_range) - _unit(ref, value_range)) ** 2).flatten(1).mean(1)
    return (-10 * torch.log10(mse.clamp(min=1e-20))).to(x.dtype)


def ssim(
    x: torch.Tensor,
    ref: torch.Tensor,
    value_range: tuple[float, float] = VALUE_RANGE,
    win_size: int | None = None,
    gaussian_weights: bool = False,
    sigma: float = 1.5,
    use_sample_covariance: bool = True,
) -> torch.Tensor:
    r"""Structural similarity per image :cite:`wang2004image`, exactly as ``skimage.metrics.structural_similarity``
    computes it on the images mapped to :math:`[0, 1]` with ``data_range=1`` (:math:`R = 1`).

    .. math::
        \mathrm{SSIM}(x, y) = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}{(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)},
        \qquad C_1 = (0.01R)^2,\ C_2 = (0.03R)^2,

    with local means, variances and covariance over a window: uniform ``win_size`` × ``win_size`` (default 7, the
    local variances rescaled to sample variances) or, with ``gaussian_weights``, a Gaussian of width ``sigma``
    truncated at 3.5σ (11 taps for σ = 1.5, population variances with ``use_sample_covariance=False``: the
    convention of :cite:`wang2004image`). As in scikit-image, the map is averaged only over the pixels whose window
    lies inside the image (a border of ``(win_size - 1) // 2`` is cropped), so 8×8 images keep a 2×2 map.
    """
    side = _pair(x, ref)
    if gaussian_weights:
        radius = int(3.5 * sigma + 0.5)
        win_size = 2 * radius + 1 if win_size is None else win_size
        g = torch.exp(-((torch.arange(-radius, radius + 1, dtype=torch.float64)) ** 2) / (2 * sigma**2))
        g = g / g.sum()
    else:
        win_size = 7 if win_size is None else win_size
        g = torch.full((win_size,), 1.0 / win_size, dtype=torch.float64)
    if win_size % 2 == 0 or win_size > side or len(g) > side:
        raise ValueError(f"the window ({win_size}) must be odd and at most the image side ({side})")
    kernel = (g[:, None] * g[None, :])[None, None].to(x.device)
    x64, r64 = _unit(x, value_range).reshape(-1, 1, side, side), _unit(ref, value_range).reshape(-1, 1, side, side)

    def local_mean(z: torch.Tensor) -> torch.Tensor:  # over the windows that lie inside the image
        return torch.nn.functional.conv2d(z, kernel)

    n = win_size**2
    cov_norm = n / (n - 1) if use_sample_covariance else 1.0
    mx, my = local_mean(x64), local_mean(r64)
    vx = cov_norm * (local_mean(x64 * x64) - mx**2)
    vy = cov_norm * (local_mean(r64 * r64) - my**2)
    cxy = cov_norm * (local_mean(x64 * r64) - mx * my)
    c1, c2 = 0.01**2, 0.03**2  # (K R)^2 with R = 1
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).to(x.dtype)


def quality(x: torch.Tensor, ref: torch.Tensor, value_range: tuple[float, float] = VALUE_RANGE) -> dict[str, float]:
    """Mean :func:`psnr` (dB) and mean :func:`ssim` (scikit-image's defaults) of images ``x`` against ``ref``."""
    return {"PSNR": float(psnr(x, ref, value_range).mean()), "SSIM": float(ssim(x, ref, value_range).mean())}
