r"""Training losses of the three views :cite:`lai2025principles`, one function for all prediction kinds.

With :math:`t \sim U(t_{min}, t_{max})`, :math:`\epsilon \sim \mathcal N(0, I)` and :math:`x_t = \alpha_t x_0 + \sigma_t\epsilon`,
the regression targets are

* ``eps``: :math:`\epsilon` (DDPM's simple loss, the reweighted ELBO :cite:`ho2020denoising`);
* ``x0``: :math:`x_0`;
* ``score``: :math:`-\epsilon/\sigma_t` (denoising score matching :cite:`vincent2011connection`), weighted by :math:`\sigma_t^2` by default;
* ``v``: :math:`\dot\alpha_t x_0 + \dot\sigma_t\epsilon` (conditional flow matching :cite:`lipman2023flow`; on the
  :class:`~varbook.diffusion.schedules.Linear` path this is :math:`\epsilon - x_0`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..runtime import rand, randn_like
from .param import check_kind
from .schedules import Schedule, expand


def denoising_loss(
    net: nn.Module,
    x0: torch.Tensor,
    schedule: Schedule,
    kind: str = "eps",
    cond: torch.Tensor | None = None,
    t_min: float = 1e-3,
    t_max: float | None = None,
    p_uncond: float = 0.0,
    null_label: int | None = None,
    score_weighting: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean squared error between ``net(x_t, t[, c])`` and the target of ``kind``; a scalar.

    Labels are replaced by ``null_label`` with probability ``p_uncond`` (label dropout for
    classifier-free guidance). Times, noise and label dropout are drawn from ``generator``
    (``None``: torch's global generator on ``x0``'s device).
    """
    check_kind(kind)
    t_max = schedule.t_max if t_max is None else t_max
    if not 0 <= t_min < t_max <= 1:
        raise ValueError(f"need 0 <= t_min < t_max <= 1, got {t_min}, {t_max}")
    if p_uncond > 0 and (cond is None or null_label is None):
        raise ValueError("label dropout needs cond and null_label")
    n = x0.shape[0]
    t = t_min + (t_max - t_min) * rand(n, generator=generator, device=x0.device, dtype=x0.dtype)
    eps = randn_like(x0, generator)
    xt = schedule.q_sample(x0, t, eps)
    if kind == "eps":
        target = eps
    elif kind == "x0":
        target = x0
    elif kind == "score":
        target = -eps / expand(schedule.sigma(t), x0)
    else:
        target = expand(schedule.d_alpha(t), x0) * x0 + expand(schedule.d_sigma(t), x0) * eps
    if cond is None:
        pred = net(xt, t)
    else:
        if p_uncond > 0 and null_label is not None:  # both are checked above
            drop = rand(n, generator=generator, device=cond.device) < p_uncond
            cond = torch.where(drop, torch.full_like(cond, null_label), cond)
        pred = net(xt, t, cond)
    err = (pred - target) ** 2
    if kind == "score" and score_weighting:
        err = err * expand(schedule.sigma(t), x0) ** 2
    return err.mean()
