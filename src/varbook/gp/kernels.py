r"""Neural-network Gaussian-process (NNGP) kernels and the random networks they describe.

A fully connected ReLU network with ``depth`` hidden layers, weights
:math:`\mathcal N(0,\sigma_w^2/n_{\rm in})` and biases :math:`\mathcal N(0,\sigma_b^2)`, and a
readout layer of weight standard deviation :math:`\sigma_{\rm last}` (no bias), converges as its
width grows to a Gaussian process whose covariance is the recursion :cite:`lee2018deep`

.. math::
   K^0(x,x')=\sigma_w^2\frac{x\cdot x'}{d}+\sigma_b^2,\qquad
   K^{l+1}(x,x')=\frac{\sigma_w^2}{2\pi}\sqrt{K^l(x,x)K^l(x',x')}\,
   \big(\sin\theta+(\pi-\theta)\cos\theta\big)+\sigma_b^2,

with :math:`\cos\theta=K^l(x,x')/\sqrt{K^l(x,x)K^l(x',x')}` (the arc-cosine kernel of
:cite:`cho2009kernel`), and the last step taken with :math:`\sigma_{\rm last}` and no bias. The
convention is that of neural-tangents' ``stax.Dense(W_std, b_std)``, used by
:cite:`lee2022scale`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..runtime import randn

Scalar = float | torch.Tensor


def _check_kernel_args(x1: torch.Tensor, x2: torch.Tensor, depth: int) -> None:
    if x1.ndim != 2 or x2.ndim != 2 or x1.shape[1] != x2.shape[1]:
        raise ValueError(f"inputs must be (n, d) and (m, d) with the same d, got {tuple(x1.shape)}, {tuple(x2.shape)}")
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"depth must be a positive integer (hidden layers), got {depth!r}")


def arccos_step(
    k12: torch.Tensor,
    k11: torch.Tensor,
    k22: torch.Tensor,
) -> torch.Tensor:
    r""":math:`\mathbb E[\mathrm{relu}(u)\,\mathrm{relu}(v)]` for a centred Gaussian pair with
    variances ``k11``, ``k22`` and covariance ``k12``.

    .. math:: \frac{\sqrt{k_{11}k_{22}}}{2\pi}\big(\sin\theta+(\pi-\theta)\cos\theta\big),
       \qquad \cos\theta=\frac{k_{12}}{\sqrt{k_{11}k_{22}}} .

    On the diagonal (:math:`\theta=0`) it is :math:`k_{11}/2`:

    >>> k = torch.tensor(2.0, dtype=torch.float64)
    >>> round(float(arccos_step(k, k, k)), 12)
    1.0
    """
    norm = (k11 * k22).clamp_min(0).sqrt()
    edge = 1 - 10 * torch.finfo(k12.dtype).eps  # arccos stays differentiable
    cos = (k12 / norm.clamp_min(torch.finfo(k12.dtype).tiny)).clamp(-edge, edge)
    theta = torch.arccos(cos)
    return norm / (2 * math.pi) * (torch.sin(theta) + (math.pi - theta) * cos)


def nngp_relu(
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    depth: int = 4,
    w_std: Scalar = 1.0,
    b_std: Scalar = 1e-8,
    last_w_std: Scalar = 1.0,
) -> torch.Tensor:
    r"""The NNGP kernel of a ReLU MLP with ``depth`` hidden layers :cite:`lee2018deep,lee2022scale`.

    Returns :math:`K(x_1,x_2)` of shape ``(..., n, m)``. ``w_std``, ``b_std`` and ``last_w_std``
    may be tensors of one batch shape ``(...)`` (a grid of hyperparameters); the defaults are
    the official code's. The recursion is the module docstring's.

    With ``depth=1``, no bias and unit weights it is half Cho and Saul's first-order arc-cosine
    kernel divided by :math:`d`; on the diagonal each hidden layer halves
    :math:`\sigma_w^2 K` and adds :math:`\sigma_b^2`:

    >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    >>> nngp_relu(x, depth=1, b_std=0.0)
    tensor([[0.2500, 0.0796],
            [0.0796, 0.2500]], dtype=torch.float64)
    """
    x2 = x1 if x2 is None else x2
    _check_kernel_args(x1, x2, depth)
    opts: dict[str, Any] = dict(dtype=x1.dtype, device=x1.device)
    stds = (w_std, b_std, last_w_std)
    w2, b2, last2 = (torch.as_tensor(v, **opts) ** 2 for v in stds)
    w2, b2, last2 = w2[..., None, None], b2[..., None, None], last2[..., None, None]
    d = x1.shape[1]
    k12 = w2 * (x1 @ x2.T) / d + b2
    k11 = w2 * (x1 * x1).sum(1)[:, None] / d + b2  # (..., n, 1)
    k22 = w2 * (x2 * x2).sum(1)[None, :] / d + b2  # (..., 1, m)
    for _ in range(depth - 1):
        k12 = w2 * arccos_step(k12, k11, k22) + b2
        k11, k22 = w2 * k11 / 2 + b2, w2 * k22 / 2 + b2
    return last2 * arccos_step(k12, k11, k22)


def nngp_relu_diag(
    x: torch.Tensor,
    depth: int = 4,
    w_std: Scalar = 1.0,
    b_std: Scalar = 1e-8,
    last_w_std: Scalar = 1.0,
) -> torch.Tensor:
    r"""The diagonal :math:`K(x_i,x_i)` of :func:`nngp_relu`, ``(..., n)``, without the ``n x n`` matrix.

    On the diagonal the recursion is :math:`K^{l+1}=\sigma_w^2K^l/2+\sigma_b^2` and the readout
    gives :math:`\sigma_{\rm last}^2K^{L-1}/2`:

    >>> x = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    >>> nngp_relu_diag(x, depth=1, b_std=0.0)
    tensor([0.2500, 1.0000], dtype=torch.float64)
    """
    _check_kernel_args(x, x, depth)
    opts: dict[str, Any] = dict(dtype=x.dtype, device=x.device)
    w2, b2, last2 = (torch.as_tensor(v, **opts)[..., None] ** 2 for v in (w_std, b_std, last_w_std))
    k = w2 * (x * x).sum(1) / x.shape[1] + b2
    for _ in range(depth - 1):
        k = w2 * k / 2 + b2
    return last2 * k / 2


def relu_network_outputs(
    x: torch.Tensor,
    n_networks: int,
    width: int,
    depth: int = 4,
    w_std: float = 1.0,
    b_std: float = 1e-8,
    last_w_std: float = 1.0,
    scale_sq: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    chunk: int = 1000,
) -> torch.Tensor:
    r"""Outputs of ``n_networks`` random ReLU MLPs of finite ``width`` at the inputs ``x``: ``(n_networks, n)``.

    Each network has ``depth`` hidden layers of ``width`` units, weights
    :math:`\mathcal N(0,\sigma_w^2/n_{\rm in})`, biases :math:`\mathcal N(0,\sigma_b^2)` and a
    readout of standard deviation :math:`\sigma_{\rm last}\sigma` (no bias), where
    :math:`\sigma^2` is ``scale_sq`` (one value per network; 1 when ``None``). The first layer
    draws its weights; each later layer draws its pre-activations from their exact conditional
    law given the previous layer's activations :math:`A` (``(n, width)``): every unit is an
    independent :math:`\mathcal N(0,\sigma_w^2AA^\top/n_{\rm in}+\sigma_b^2)` vector over the
    inputs, which is the law of :math:`AW^\top/\sqrt{n_{\rm in}}+b` without drawing the
    ``width x width`` matrix :math:`W`. The distribution is that of the finite network, so the
    covariance of the outputs differs from :func:`nngp_relu` by the finite-width correction only.
    The conditional covariances get a relative jitter of :math:`\max(10^{-10},100\,n\,\epsilon_{\rm mach})`
    times their mean diagonal (so duplicate inputs work in float32 as well). Networks are drawn ``chunk`` at a time to bound the memory.
    """
    if x.ndim != 2:
        raise ValueError(f"x must be (n, d), got {tuple(x.shape)}")
    if n_networks < 1 or width < 1 or depth < 1 or chunk < 1:
        raise ValueError(
            f"n_networks, width, depth and chunk must be positive, got {n_networks}, {width}, {depth}, {chunk}"
        )
    if scale_sq is not None and scale_sq.shape != (n_networks,):
        raise ValueError(f"scale_sq must have shape ({n_networks},), got {tuple(scale_sq.shape)}")
    draw: dict[str, Any] = dict(generator=generator, device=x.device, dtype=x.dtype)
    n, d = x.shape
    eye = torch.eye(n, dtype=x.dtype, device=x.device)
    # relative jitter above the dtype's resolution (1e-10 in float64; 100 n eps in float32), so that
    # duplicate inputs, whose Gram matrix is singular, still factorise in either precision
    finfo = torch.finfo(x.dtype)
    jitter_scale, tiny = max(1e-10, 100 * n * finfo.eps), finfo.tiny
    chunks = []
    for start in range(0, n_networks, chunk):
        m = min(chunk, n_networks - start)
        w1 = randn(m, d, width, **draw) * w_std / math.sqrt(d)
        h = x @ w1 + b_std * randn(m, 1, width, **draw)  # (m, n, width)
        for layer in range(depth):
            a = torch.relu(h)
            w, b, units = (last_w_std, 0.0, 1) if layer == depth - 1 else (w_std, b_std, width)
            gram = w**2 * a @ a.transpose(1, 2) / width + b**2
            jitter = jitter_scale * gram.diagonal(dim1=1, dim2=2).mean(1)[:, None, None] + tiny
            chol = torch.linalg.cholesky(gram + jitter * eye)
            h = chol @ randn(m, n, units, **draw)
        chunks.append(h[..., 0])
    out = torch.cat(chunks)
    return out if scale_sq is None else out * scale_sq.sqrt()[:, None]


__all__ = ["arccos_step", "nngp_relu", "nngp_relu_diag", "relu_network_outputs"]
