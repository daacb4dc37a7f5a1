r"""A denoiser seen through all four parameterisations: the object every sampler takes.

A :class:`Field` wraps one prediction (of kind ``eps``, ``x0``, ``score`` or ``v``) on a schedule and
answers the other three through :mod:`varbook.diffusion.param`. A trained network becomes a field
with :class:`Denoiser`; the exact Gaussian-mixture fields of :mod:`varbook.diffusion.gmm` and the
guided field of :mod:`varbook.diffusion.guidance` are fields too, so samplers never care which.
"""

from __future__ import annotations

import torch
from torch import nn

from .param import check_kind, coefficients, convert, from_eps_with, to_eps_with
from .schedules import Schedule, as_time


class Field:
    """Base class: subclasses set ``schedule`` and ``kind`` and implement :meth:`predict`."""

    schedule: Schedule
    kind: str

    def predict(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _get(self, kind: str, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        tt = as_time(t, x)
        return convert(self.predict(x, tt), self.kind, kind, x, tt, self.schedule)

    # each of the four views is a Drift/Score of varbook.protocols: (x, t) -> Tensor
    def eps(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        r"""Predicted noise :math:`\hat\epsilon(x_t, t)`."""
        return self._get("eps", x, t)

    def x0(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        r"""Predicted data :math:`\hat x_0(x_t, t) = \mathbb E[x_0 \mid x_t]`."""
        return self._get("x0", x, t)

    def score(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        r"""Score :math:`\nabla_x \log p_t(x)`."""
        return self._get("score", x, t)

    def velocity(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        r"""Probability-flow velocity :math:`\dot\alpha_t\hat x_0 + \dot\sigma_t\hat\epsilon = f x - \tfrac12 g^2 \nabla\log p_t`."""
        return self._get("v", x, t)

    def eps_x0(self, x: torch.Tensor, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`(\hat\epsilon, \hat x_0)` from one evaluation (what DDIM and DPM-Solver need)."""
        tt = as_time(t, x)
        pred = self.predict(x, tt)
        coef = coefficients(self.schedule, tt, x)
        eps = to_eps_with(pred, self.kind, x, coef)
        return eps, pred if self.kind == "x0" else from_eps_with(eps, "x0", x, coef)


class Denoiser(nn.Module, Field):
    """A network ``net(x, t[, c])`` read as a prediction of kind ``kind`` on ``schedule``.

    ``t`` reaches the network as a float tensor of shape ``(batch,)`` with the dtype of ``x``;
    ``cond`` (class labels, say) is passed through when given.
    """

    def __init__(self, net: nn.Module, schedule: Schedule, kind: str = "eps", cond: torch.Tensor | None = None):
        nn.Module.__init__(self)
        check_kind(kind)
        self.net, self.schedule, self.kind, self.cond = net, schedule, kind, cond

    def predict(self, x, t):
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        return self.net(x, t) if self.cond is None else self.net(x, t, self.cond)

    def with_cond(self, cond: torch.Tensor | None) -> Denoiser:
        """The same network conditioned on ``cond`` (shares parameters)."""
        return Denoiser(self.net, self.schedule, self.kind, cond)

    def forward(self, x, t):
        return self.predict(x, t)
