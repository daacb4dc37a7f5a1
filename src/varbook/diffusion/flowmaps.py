r"""Flow maps: networks that jump between times of the probability-flow ODE instead of following it.

MeanFlow :cite:`geng2025meanflow` learns the average velocity over :math:`[r, t]` of the flow-matching path
(:class:`~varbook.diffusion.schedules.Linear`, :math:`z_t = (1 - t)x_0 + t\epsilon`, noise at :math:`t = 1`):

.. math::
    u(z_t, r, t) = \frac{1}{t - r}\int_r^t v(z_\tau, \tau)\,d\tau, \qquad z_r = z_t - (t - r)\,u(z_t, r, t).

Differentiating :math:`(t - r)u = \int_r^t v` in :math:`t` gives the MeanFlow identity
:math:`u = v - (t - r)\,\tfrac{d}{dt}u`, with :math:`\tfrac{d}{dt}u = v\cdot\partial_z u + \partial_t u` a
Jacobian-vector product (``torch.func.jvp``, one forward-mode pass). The regression target uses the
conditional velocity :math:`v = \epsilon - x_0` and a stop-gradient.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import jvp

from ..runtime import rand, randn_like


def meanflow_loss(
    net: nn.Module,
    x0: torch.Tensor,
    p_mean: float = 0.25,
    power: float = 1.0,
    c: float = 1e-3,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""The MeanFlow loss on a batch of data; ``net(z, t, r)`` predicts the average velocity.

    A fraction ``p_mean`` of the pairs has :math:`r < t` (the paper's best ImageNet setting is 25 %);
    the others have :math:`r = t`, where the loss is plain flow matching. The adaptive weight
    :math:`1/(\|\Delta\|^2 + c)^{p}` (stop-gradient) follows the paper. Times and noise are drawn from
    ``generator`` (``None``: torch's global generator).
    """
    if not 0 <= p_mean <= 1:
        raise ValueError(f"p_mean must lie in [0, 1], got {p_mean}")
    n = x0.shape[0]
    shape = (n,) + (1,) * (x0.dim() - 1)
    a = rand(n, generator=generator, device=x0.device, dtype=x0.dtype)
    b = rand(n, generator=generator, device=x0.device, dtype=x0.dtype)
    t, r = torch.maximum(a, b), torch.minimum(a, b)
    r = torch.where(rand(n, generator=generator, device=x0.device) < p_mean, r, t)
    eps = randn_like(x0, generator)
    z = (1 - t).reshape(shape) * x0 + t.reshape(shape) * eps
    v = eps - x0
    tangents = (v, torch.ones_like(t), torch.zeros_like(r))  # d/dt along the path: dz/dt = v, dt/dt = 1, dr/dt = 0
    u, du_dt = jvp(lambda z_, t_, r_: net(z_, t_, r_), (z, t, r), tangents)[:2]  # (primal, tangent)
    target = (v - (t - r).reshape(shape) * du_dt).detach()  # u_tgt = v - (t - r) du/dt, held constant
    err = ((u - target) ** 2).flatten(1).sum(1)
    weight = 1.0 / (err.detach() + c) ** power
    return (weight * err).mean()


@torch.no_grad()
def sample_meanflow(net: nn.Module, z: torch.Tensor, n_steps: int = 1) -> torch.Tensor:
    r"""Jump from noise at :math:`t = 1` to data at :math:`t = 0` in ``n_steps`` equal jumps :math:`z_r = z_t - (t - r)u(z_t, r, t)`."""
    if n_steps < 1:
        raise ValueError(f"n_steps must be at least 1, got {n_steps}")
    ts = torch.linspace(1.0, 0.0, n_steps + 1, dtype=z.dtype, device=z.device)
    for t, r in zip(ts[:-1], ts[1:], strict=True):
        tt, rr = t.expand(z.shape[0]), r.expand(z.shape[0])
        z = z - (t - r) * net(z, tt, rr)
    return z
