r"""Test-time optimisation of latent variables, vectorised over many independent problems.

Given latents :math:`\lambda=(\lambda_1,\dots,\lambda_P)` of :math:`P` independent problems and a
loss whose :math:`p`-th entry depends on :math:`\lambda_p` only, Adam on :math:`\sum_p
\mathcal L_p(\lambda_p)` updates each :math:`\lambda_p` exactly as Adam on :math:`\mathcal L_p` alone
(Adam is elementwise), so one call fits every problem at once. PV-RNN's error regression
:cite:`ahmadi2019novel` is one call per time step; per-datum SGVB, local fits and μ-optimisation
are others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from varbook import runtime


def optimize_latents(
    params: torch.Tensor | Sequence[torch.Tensor],
    loss_fn: Callable[..., torch.Tensor],
    steps: int,
    lr: float,
    *,
    betas: tuple[float, float] = (0.9, 0.999),
    maximize: bool = False,
    desc: str | None = None,
) -> tuple[list[torch.Tensor], runtime.History]:
    r"""Run ``steps`` Adam steps on the latents ``params`` (the weights of the model stay as they are).

    ``loss_fn(*latents)`` returns the loss of every problem (any shape; it is summed, so problems
    that share no latent are optimised independently). Fresh leaf copies of ``params`` are optimised
    (the inputs are not changed) and returned, detached, with a :class:`~varbook.runtime.History` of
    the summed loss. ``lr = 0`` leaves the latents where they started; ``maximize=True`` climbs the
    loss instead (Adam's ``maximize``): both are negative controls of a method built on this call.

    The optimum of :math:`\sum_p \|\lambda_p-c_p\|^2` is :math:`c`:

    >>> c = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    >>> (lam,), hist = optimize_latents(torch.zeros(2, 2), lambda x: ((x - c) ** 2).sum(-1), 500, 0.1)
    >>> bool(torch.allclose(lam, c, atol=1e-3))
    True
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"optimize_latents needs an integer number of steps >= 1, got {steps!r}")
    if not lr >= 0:
        raise ValueError(f"the learning rate must be >= 0, got {lr}")
    tensors = [params] if isinstance(params, torch.Tensor) else list(params)
    if not tensors or not all(isinstance(p, torch.Tensor) and p.is_floating_point() for p in tensors):
        raise ValueError("optimize_latents needs one or more floating-point tensors of latents")
    leaves = [p.detach().clone().requires_grad_(True) for p in tensors]
    history = runtime.History()
    if lr == 0:
        with torch.no_grad():
            history.log(loss=loss_fn(*leaves).sum())
        return [p.detach() for p in leaves], history
    opt = torch.optim.Adam(leaves, lr=lr, betas=betas, maximize=maximize)
    for step in runtime.progress(range(steps), desc=desc, disable=desc is None, leave=False):
        loss = loss_fn(*leaves).sum()
        history.log(loss=loss.detach())
        runtime.descend(opt, loss, step, "latent loss")
    return [p.detach() for p in leaves], history
