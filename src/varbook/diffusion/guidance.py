r"""Classifier-free guidance :cite:`ho2022classifierfree`: a linear combination of a conditional and an unconditional field.

.. math::
    \tilde\epsilon(x, c) = (1 + w)\,\hat\epsilon(x, c) - w\,\hat\epsilon(x, \varnothing).

Every conversion of :mod:`varbook.diffusion.param` is affine in the prediction at fixed :math:`(x, t)`,
so guiding the network's own output (whatever its kind) is the same as guiding :math:`\hat\epsilon`.
The unconditional field is the same network given the null label, learned by label dropout
(:func:`varbook.diffusion.losses.denoising_loss` with ``p_uncond > 0``).
"""

from __future__ import annotations

import torch

from .field import Denoiser, Field


def guide(cond: torch.Tensor, uncond: torch.Tensor, w: float) -> torch.Tensor:
    r""":math:`(1 + w)\,\text{cond} - w\,\text{uncond}`; :math:`w = 0` is plain conditional sampling."""
    if cond.shape != uncond.shape:
        raise ValueError(
            f"conditional and unconditional predictions differ in shape: {tuple(cond.shape)}, {tuple(uncond.shape)}"
        )
    return (1 + w) * cond - w * uncond


class GuidedField(Field):
    """A conditional :class:`Denoiser` guided with strength ``w`` towards ``labels``; ``null_label`` marks 'no class'."""

    def __init__(self, denoiser: Denoiser, labels: torch.Tensor, null_label: int, w: float):
        if w < 0:
            raise ValueError(f"guidance strength must be non-negative, got {w}")
        self.denoiser, self.labels, self.w = denoiser, labels, w
        self.schedule, self.kind = denoiser.schedule, denoiser.kind
        self.null = torch.full_like(labels, null_label)

    def predict(self, x, t):
        if x.shape[0] != self.labels.shape[0]:
            raise ValueError(f"{self.labels.shape[0]} labels for a batch of {x.shape[0]}")
        cond = self.denoiser.with_cond(self.labels).predict(x, t)
        if self.w == 0:
            return cond
        return guide(cond, self.denoiser.with_cond(self.null).predict(x, t), self.w)
