"""Linear forward operators of imaging inverse problems, and image-quality metrics."""

from .metrics import VALUE_RANGE, psnr, quality, ssim
from .operators import BatchInpainting, GaussianBlur, Inpainting, LinearOperator, SuperResolution

__all__ = [
    "LinearOperator",
    "Inpainting",
    "BatchInpainting",
    "SuperResolution",
    "GaussianBlur",
    "psnr",
    "ssim",
    "quality",
    "VALUE_RANGE",
]
