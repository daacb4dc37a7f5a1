"""Linear forward operators of imaging inverse problems, and image-quality metrics."""

from .metrics import psnr, quality, ssim
from .operators import GaussianBlur, Inpainting, LinearOperator, SuperResolution

__all__ = ["LinearOperator", "Inpainting", "SuperResolution", "GaussianBlur", "psnr", "ssim", "quality"]
