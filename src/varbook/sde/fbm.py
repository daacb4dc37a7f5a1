r"""Markov-approximate fractional Brownian motion (MA-fBM) :cite:`daems2024variational,harms2019affine`.

Fractional Brownian motion with Hurst index :math:`H` is approximated by a weighted sum of :math:`K`
Ornstein–Uhlenbeck processes :math:`dY_k = -\gamma_kY_k\,dt + dW_t` that share **one** Brownian motion:

.. math::
    \hat B_H(t) = \sum_k\omega_k\big(Y_k(t) - Y_k(0)\big)\ \text{(type I, } Y(0)\text{ stationary)},\qquad
    \hat B_H(t) = \sum_k\omega_kY_k(t)\ \text{(type II, } Y(0) = 0\text{)}.

Type I targets the Mandelbrot–van Ness process :math:`\frac{1}{\Gamma(H+\frac12)}\int_{-\infty}^t[(t-s)_+^{H-\frac12}-(-s)_+^{H-\frac12}]dW_s`
(variance :math:`V_Ht^{2H}`), type II the Riemann–Liouville process :math:`\frac{1}{\Gamma(H+\frac12)}\int_0^t(t-s)^{H-\frac12}dW_s`.
The weights :math:`\omega` minimising :math:`\mathbb E\int_0^T(B_H - \hat B_H)^2dt` solve :math:`A\omega = b` in closed form;
:math:`b` involves regularised incomplete gamma functions of :math:`H`, whose derivative in the shape argument
PyTorch does not provide, so :func:`gammainc` supplies it (Gauss–Legendre quadrature) for a learnable :math:`H`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from ..nn import MLP
from ..protocols import Control, Diffusion, Drift
from ..runtime import History, check_choice, descend, progress, randn

KINDS = ("I", "II")

# composite Gauss-Legendre on geometrically graded panels of [0, 1], refined towards 0
_GL_X, _GL_W = np.polynomial.legendre.leggauss(16)
_EDGES = np.concatenate([[0.0], np.geomspace(2.0**-30, 1.0, 31)])
_NODES = np.concatenate([(a + b) / 2 + (b - a) / 2 * _GL_X for a, b in zip(_EDGES[:-1], _EDGES[1:], strict=True)])
_WEIGHTS = np.concatenate([(b - a) / 2 * _GL_W for a, b in zip(_EDGES[:-1], _EDGES[1:], strict=True)])


def _dlower_da(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    r""":math:`\partial_a\gamma(a, x) = \int_0^x \ln u\,u^{a-1}e^{-u}du`, with :math:`u = x w^{2/a}` (smooth in :math:`w` on [0, 1])."""
    w = torch.as_tensor(_NODES, dtype=torch.float64)
    q = torch.as_tensor(_WEIGHTS, dtype=torch.float64)
    a, x = torch.broadcast_tensors(a.double(), x.double())
    aa, xx = a[..., None], x[..., None]
    # u^{a-1} du = (x^a / a) d(w^2) = (2 x^a / a) w dw ;  ln u = ln x + (2/a) ln w
    u = xx * w ** (2 / aa)
    integrand = (torch.log(xx) + 2 / aa * torch.log(w)) * torch.exp(-u) * 2 * w
    return (xx**aa / aa * (integrand * q).sum(-1)[..., None])[..., 0]


_SHAPE_DERIVATIVE = [True]  # False inside without_shape_derivative()


@contextlib.contextmanager
def without_shape_derivative() -> Iterator[None]:
    r"""Inside this block :func:`gammainc` and :func:`gammaincc_scaled` return a zero derivative in their first
    argument, as if the incomplete gamma functions were constants in :math:`H` (what a ``.detach()`` or a
    wrapper without that derivative would give): the negative control of the learnable Hurst index."""
    _SHAPE_DERIVATIVE[0] = False
    try:
        yield
    finally:
        _SHAPE_DERIVATIVE[0] = True


class _GammaincP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, x):
        ctx.save_for_backward(a, x)
        return torch.special.gammainc(a, x)

    @staticmethod
    def backward(ctx, grad):
        a, x = ctx.saved_tensors
        ga = gx = None
        if ctx.needs_input_grad[0] and not _SHAPE_DERIVATIVE[0]:
            ga = torch.zeros_like(a)
        elif ctx.needs_input_grad[0]:
            p = torch.special.gammainc(a, x)
            dp = _dlower_da(a, x) / torch.exp(torch.lgamma(a.double())) - p.double() * torch.special.digamma(a.double())
            ga = (grad * dp.to(grad.dtype)).sum_to_size(a.shape) if a.shape != grad.shape else grad * dp.to(grad.dtype)
        if ctx.needs_input_grad[1]:
            dx = torch.exp((a - 1) * torch.log(x) - x - torch.lgamma(a))
            gx = (grad * dx).sum_to_size(x.shape) if x.shape != grad.shape else grad * dx
        return ga, gx


def gammainc(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    r"""Regularised lower incomplete gamma :math:`P(a, x)`, differentiable in both arguments (``x > 0``)."""
    a, x = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(x, dtype=torch.float64)
    if (a <= 0).any() or (x <= 0).any():
        raise ValueError("gammainc needs a > 0 and x > 0")
    return _GammaincP.apply(a, x)


_LAG_X, _LAG_W = (torch.as_tensor(v, dtype=torch.float64) for v in np.polynomial.laguerre.laggauss(48))


class _GammainccScaled(torch.autograd.Function):
    """Q(a, x) e^x = (1/Gamma(a)) int_0^inf (x + v)^(a-1) e^(-v) dv, by Gauss-Laguerre for x >= 1 (no cancellation)."""

    @staticmethod
    def _parts(a, x):
        a, x = torch.broadcast_tensors(a.double(), x.double())
        xv = x[..., None] + _LAG_X
        pw = xv ** (a[..., None] - 1)
        lg = torch.exp(torch.lgamma(a))
        value = (pw * _LAG_W).sum(-1) / lg
        dvalue_da = (torch.log(xv) * pw * _LAG_W).sum(-1) / lg - torch.special.digamma(a) * value
        small = x < 1
        if small.any():  # near 0 the integrand is not smooth enough for Laguerre: use the library and P's derivative
            q = torch.special.gammaincc(a, x) * torch.exp(x)
            dq = -(_dlower_da(a, x) / lg - torch.special.gammainc(a, x) * torch.special.digamma(a)) * torch.exp(x)
            value, dvalue_da = torch.where(small, q, value), torch.where(small, dq, dvalue_da)
        return value, dvalue_da

    @staticmethod
    def forward(ctx, a, x):
        value, dvalue_da = _GammainccScaled._parts(a, x)
        ctx.save_for_backward(a, x, value, dvalue_da)
        return value

    @staticmethod
    def backward(ctx, grad):
        a, x, value, dvalue_da = ctx.saved_tensors
        ga = (grad * dvalue_da).sum_to_size(a.shape) if ctx.needs_input_grad[0] else None
        if ga is not None and not _SHAPE_DERIVATIVE[0]:
            ga = torch.zeros_like(ga)
        gx = None
        if ctx.needs_input_grad[1]:
            gx = (grad * (value - torch.exp((a - 1) * torch.log(x) - torch.lgamma(a)))).sum_to_size(x.shape)
        return ga, gx


def gammaincc_scaled(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    r""":math:`Q(a, x)\,e^{x}`, the regularised upper incomplete gamma scaled to stay finite and accurate for large ``x``;
    differentiable in both arguments."""
    a, x = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(x, dtype=torch.float64)
    if (a <= 0).any() or (x < 0).any():
        raise ValueError("gammaincc_scaled needs a > 0 and x >= 0")
    return _GammainccScaled.apply(a, x)


def gamma_grid(K: int, gamma_max: float = 20.0) -> torch.Tensor:
    r"""Geometric rates :math:`\gamma_k = r^{k - (K+1)/2}`, :math:`r = \gamma_{max}^{2/(K-1)}` (so :math:`\gamma_1\gamma_K = 1`), float64."""
    if K < 1 or gamma_max <= 0:
        raise ValueError(f"need K >= 1 and gamma_max > 0, got {K}, {gamma_max}")
    if K == 1:
        return torch.ones(1, dtype=torch.float64)
    r = gamma_max ** (2 / (K - 1))
    return torch.tensor([r ** (k - (K + 1) / 2) for k in range(1, K + 1)], dtype=torch.float64)


def v_h(H) -> torch.Tensor:
    r""":math:`V_H = 1/(\Gamma(2H+1)\sin\pi H)`, the variance of type-I fBM at :math:`t = 1`."""
    H = torch.as_tensor(H, dtype=torch.float64)
    return 1 / (torch.exp(torch.lgamma(2 * H + 1)) * torch.sin(math.pi * H))


def _check(H, kind):
    H = torch.as_tensor(H, dtype=torch.float64)
    if not (0 < H).all() or not (H < 1).all():
        raise ValueError(f"the Hurst index must lie in (0, 1), got {H}")
    check_choice("fBM type", kind, KINDS)
    return H


def normal_equations(H, gammas: torch.Tensor, T: float = 1.0, kind: str = "I") -> tuple[torch.Tensor, torch.Tensor]:
    r"""The matrix :math:`A` and vector :math:`b` of the normal equations :math:`A\omega = b` :cite:`daems2024variational`:
    :math:`A_{ij} = \int_0^T\operatorname{Cov}(Z_i(t), Z_j(t))\,dt` and :math:`b_k = \int_0^T\operatorname{Cov}(B_H(t), Z_k(t))\,dt`
    with :math:`Z_k = Y_k - Y_k(0)` (type I) or :math:`Y_k` (type II). With :math:`a = H + \frac12`, :math:`P`, :math:`Q` the
    regularised lower and upper incomplete gamma functions,

    .. math::
        b_k^{I} = 2T\gamma_k^{-a} - \frac{T^a}{\gamma_k\Gamma(a+1)} + \big[e^{-\gamma_kT} - Q(a, \gamma_kT)e^{\gamma_kT}\big]
        \gamma_k^{-(a+1)},\qquad
        b_k^{II} = T\gamma_k^{-a}P(a, \gamma_kT) - a\gamma_k^{-(a+1)}P(a+1, \gamma_kT).

    float64, differentiable in ``H``."""
    H = _check(H, kind)
    g = gammas.double()
    gi, gj = g[:, None], g[None, :]
    a = H + 0.5
    if kind == "I":
        A = (2 * T + (torch.exp(-gi * T) - 1) / gi + (torch.exp(-gj * T) - 1) / gj) / (gi + gj)
        q_e = gammaincc_scaled(a, g * T)  # Q(a, gT) e^{gT}
        b = (
            2 * T * g ** (-a)
            - T**a / (g * torch.exp(torch.lgamma(a + 1)))
            + (torch.exp(-g * T) - q_e) * g ** (-(a + 1))
        )
    else:
        s = gi + gj
        A = (T + (torch.exp(-s * T) - 1) / s) / s
        b = T * g ** (-a) * gammainc(a, g * T) - a * g ** (-(a + 1)) * gammainc(a + 1, g * T)
    return A, b


def target_energy(H, T: float, kind: str = "I") -> torch.Tensor:
    r""":math:`\int_0^T\operatorname{Var}B_H(t)\,dt`: :math:`V_HT^{2H+1}/(2H+1)` (type I), :math:`T^{2H+1}/((2H+1)2H\Gamma(H+\frac12)^2)` (type II)."""
    H = _check(H, kind)
    if kind == "I":
        return v_h(H) * T ** (2 * H + 1) / (2 * H + 1)
    return T ** (2 * H + 1) / ((2 * H + 1) * 2 * H * torch.exp(2 * torch.lgamma(H + 0.5)))


def optimal_omega(H, gammas: torch.Tensor, T: float = 1.0, kind: str = "I", ridge: float = 0.0) -> torch.Tensor:
    r"""The weights minimising :math:`\mathbb E\int_0^T(B_H-\hat B_H)^2dt`: the solution of :math:`A\omega = b` (float64, differentiable in ``H``)."""
    H = _check(H, kind)
    if T <= 0:
        raise ValueError(f"the horizon T must be positive, got {T}")
    A, b = normal_equations(H, gammas, T, kind)
    if ridge:
        A = A + ridge * torch.eye(len(b), dtype=A.dtype)
    return torch.linalg.solve(A, b)


def mixed_omega(H, gammas: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    r"""The type-I matrix :math:`A` solved with the **type-II** vector :math:`b`: a formula mix-up of the two types (the
    negative control of the pointwise variance check; a third-party port mixes the two types' formulas)."""
    A, _ = normal_equations(H, gammas, T, "I")
    _, b = normal_equations(H, gammas, T, "II")
    return torch.linalg.solve(A, b)


def approximation_error(omega: torch.Tensor, H, gammas: torch.Tensor, T: float = 1.0, kind: str = "I") -> torch.Tensor:
    r"""Relative mean-square error :math:`\mathbb E\int_0^T(B_H-\hat B_H)^2dt \big/ \int_0^T\operatorname{Var}B_H\,dt` in closed form,
    :math:`(\omega^\top A\omega - 2b^\top\omega + \int_0^T\operatorname{Var}B_H)/\int_0^T\operatorname{Var}B_H`.

    A mean-square error cannot be negative: a value below :math:`-10^{-9}` (far beyond the round-off of the three
    terms) means that :math:`A`, :math:`b` or the target energy is wrong, and raises ``ValueError`` instead of being
    clipped to 0, which would hide it."""
    H = _check(H, kind)
    A, b = normal_equations(H, gammas, T, kind)
    energy = target_energy(H, T, kind)
    w = omega.double()
    quad, lin = w @ A @ w, 2 * b @ w
    mse = quad - lin + energy
    scale = float((quad.abs() + lin.abs() + energy).detach())
    if float(mse.detach()) < -1e-9 * scale:
        raise ValueError(
            f"negative mean-square error {float(mse.detach()):.3e}: the normal equations or the target are wrong"
        )
    return mse / energy


def riemann_omega(H, gammas: torch.Tensor) -> torch.Tensor:
    r"""The quadrature weights of the Harms–Stefanovits representation :cite:`harms2019affine` (type I, any
    :math:`H \ne \tfrac12`): the non-optimal rule the optimal weights are compared with :cite:`daems2024variational`.

    With :math:`a = H + \frac12`, :math:`(t-s)^{H-\frac12} = \frac{1}{\Gamma(1-a)}\int_0^\infty\gamma^{-a}e^{-\gamma(t-s)}d\gamma`
    for :math:`H < \frac12`, so :math:`B_H = \int(Y_\gamma(t) - Y_\gamma(0))\,\mu(d\gamma)`,
    :math:`\mu(d\gamma) = \gamma^{-a}d\gamma/(\Gamma(a)\Gamma(1-a))`. Interpolating :math:`\gamma\mapsto Y_\gamma` linearly
    between the grid's rates (hat functions :math:`\phi_k`) gives :math:`\omega_k = \int\phi_k\,d\mu`. For
    :math:`H > \frac12` that integral diverges at 0; an integration by parts (:math:`\gamma^{-a} = \partial_\gamma
    \gamma^{1-a}/(1-a)`, boundary terms dropped) gives :math:`\omega_k = -\frac{1}{\Gamma(a)\Gamma(2-a)}
    \int\gamma^{1-a}\phi_k'(\gamma)\,d\gamma`. Both integrals are exact on each interval of the grid.
    """
    H = _check(H, "I")
    g = gammas.double()
    if len(g) < 2:
        raise ValueError("the quadrature rule needs at least two rates")
    if bool((H == 0.5).any()):
        raise ValueError("the quadrature rule needs H != 1/2")
    a = H + 0.5
    lo, hi = g[:-1], g[1:]
    width = hi - lo
    moment2 = (hi ** (2 - a) - lo ** (2 - a)) / (2 - a)  # int gamma^{1-a} over each interval
    w = torch.zeros(len(g), dtype=torch.float64)
    if H < 0.5:
        moment1 = (hi ** (1 - a) - lo ** (1 - a)) / (1 - a)  # int gamma^{-a}
        rise, fall = (moment2 - lo * moment1) / width, (hi * moment1 - moment2) / width  # int gamma^{-a} phi
        w = w.index_add(0, torch.arange(1, len(g)), rise).index_add(0, torch.arange(len(g) - 1), fall)
        return w / (torch.exp(torch.lgamma(a)) * torch.exp(torch.lgamma(1 - a)))
    slope = moment2 / width  # phi_k' = +1/width on its left interval, -1/width on its right one
    w = w.index_add(0, torch.arange(1, len(g)), -slope).index_add(0, torch.arange(len(g) - 1), slope)
    return w / (torch.exp(torch.lgamma(a)) * torch.exp(torch.lgamma(2 - a)))


def variance_error(omega: torch.Tensor, H, gammas: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    r"""Pointwise relative error of the type-I variance, :math:`\operatorname{Var}\hat B_H(t)/(V_Ht^{2H}) - 1` at times
    ``ts > 0``, from the closed-form covariance of the approximation (:func:`mafbm_covariance`). Unlike the integrated
    gap (which equals :math:`-\varepsilon` at the solution of :math:`A\omega = b` whatever :math:`b` is), it does not go
    through :math:`b`, so it sees a wrong :math:`b`."""
    H = _check(H, "I")
    t = torch.as_tensor(ts, dtype=torch.float64)
    if (t <= 0).any():
        raise ValueError("variance_error needs times > 0")
    return torch.diagonal(mafbm_covariance(omega, gammas, t, "I")) / (v_h(H) * t ** (2 * H)) - 1


def fbm_covariance(ts: torch.Tensor, H, kind: str = "I") -> torch.Tensor:
    r"""Exact covariance of :math:`B_H` at times ``ts``: :math:`\frac{V_H}2(t^{2H}+s^{2H}-|t-s|^{2H})` for type I;
    for type II by quadrature of :math:`\frac{1}{\Gamma(H+\frac12)^2}\int_0^{m}x^{H-\frac12}(x+d)^{H-\frac12}dx`
    (:math:`x = m - u`, :math:`m = \min(s, t)`, :math:`d = |t - s|`), whose diagonal is
    :math:`t^{2H}/(2H\,\Gamma(H+\frac12)^2)`.

    The distance :math:`x` to the end point is computed directly, never as the difference :math:`m - u` (which
    rounds to 0 at the smallest quadrature nodes and gave :math:`+\infty` for :math:`H \lesssim 0.21`). For
    :math:`H < \frac12`, :math:`x = m v^{1/(2H)}` makes :math:`x^{2H-1}dx` flat and leaves the bounded factor
    :math:`(1 + d/x)^{H-\frac12}`; for :math:`H \ge \frac12`, :math:`x = m v^{1/(H+\frac12)}` makes
    :math:`x^{H-\frac12}dx` flat and leaves the bounded factor :math:`(x + d)^{H-\frac12}`."""
    H = _check(H, kind)
    t = torch.as_tensor(ts, dtype=torch.float64)
    ti, tj = t[:, None], t[None, :]
    if kind == "I":
        return v_h(H) / 2 * (ti ** (2 * H) + tj ** (2 * H) - (ti - tj).abs() ** (2 * H))
    v = torch.as_tensor(_NODES, dtype=torch.float64)
    q = torch.as_tensor(_WEIGHTS, dtype=torch.float64)
    m = torch.minimum(ti, tj)[..., None]
    d = (ti - tj).abs()[..., None]
    alpha = H - 0.5
    if H < 0.5:
        x = m * v ** (1 / (2 * H))
        ratio = torch.where(d == 0, torch.ones_like(x), (1 + d / x) ** alpha)  # x = 0, d > 0: inf^alpha = 0
        f = m ** (2 * H) / (2 * H) * ratio
    else:
        p = 1 / (H + 0.5)
        f = m ** (H + 0.5) * p * (m * v**p + d) ** alpha
    return (f * q).sum(-1) / torch.exp(2 * torch.lgamma(H + 0.5))


def mafbm_covariance(omega: torch.Tensor, gammas: torch.Tensor, ts: torch.Tensor, kind: str = "I") -> torch.Tensor:
    r"""Exact covariance of the approximation :math:`\hat B_H` at times ``ts`` (OU cross-covariances in closed form)."""
    check_choice("fBM type", kind, KINDS)
    t = torch.as_tensor(ts, dtype=torch.float64)
    g = gammas.double()
    gi, gj = g[:, None, None, None], g[None, :, None, None]
    ti, tj = t[None, None, :, None], t[None, None, None, :]
    s = gi + gj
    if kind == "I":
        # stationary OU: Cov(Y_i(t), Y_j(u)) = e^{-g_i (t-u)} / (g_i + g_j) for t >= u
        def c(a, b):
            return torch.where(a >= b, torch.exp(-gi * (a - b)), torch.exp(-gj * (b - a))) / s

        zero = torch.zeros_like(ti)
        cov = c(ti, tj) - c(ti, zero) - c(zero, tj) + c(zero, zero)
    else:
        m = torch.minimum(ti, tj)
        cov = torch.exp(-gi * (ti - m) - gj * (tj - m)) * (1 - torch.exp(-s * m)) / s
    return torch.einsum("i,j,ijab->ab", omega.double(), omega.double(), cov)


def brownian_increments(ts: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Increments ``(len(ts) - 1, n)`` of a standard Brownian motion on the grid ``ts`` (float64)."""
    h = torch.as_tensor(ts, dtype=torch.float64).diff()
    if (h <= 0).any():
        raise ValueError("ts must be strictly increasing")
    return randn(len(h), n, generator=generator, dtype=torch.float64) * h.sqrt()[:, None]


def simulate_ou(
    gammas: torch.Tensor, ts: torch.Tensor, dW: torch.Tensor, kind: str = "I", generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""The :math:`K` OU processes :math:`dY_k = -\gamma_kY_k\,dt + dW` driven by the **same** increments ``dW (steps, n)``.

    Each step decays exactly and adds the increment at the step's midpoint,
    :math:`Y \mapsto e^{-\gamma h}Y + e^{-\gamma h/2}\Delta W` (accurate while :math:`\gamma_{max}h \ll 1`). Type I starts
    from the stationary law :math:`\mathcal N(0, C)`, :math:`C_{ij} = 1/(\gamma_i+\gamma_j)`; type II from 0.
    Returns ``(len(ts), n, K)``.
    """
    check_choice("fBM type", kind, KINDS)
    t = torch.as_tensor(ts, dtype=torch.float64)
    if dW.shape[0] != len(t) - 1:
        raise ValueError(f"{dW.shape[0]} increments for a grid of {len(t)} times")
    g = gammas.double()
    n, K = dW.shape[1], len(g)
    y = torch.zeros(n, K, dtype=torch.float64)
    if kind == "I":
        y = (
            randn(n, K, generator=generator, dtype=torch.float64)
            @ torch.linalg.cholesky(1 / (g[:, None] + g[None, :])).T
        )
    out = [y]
    for h, dw in zip(t.diff(), dW, strict=True):
        y = torch.exp(-g * h) * y + torch.exp(-g * h / 2) * dw[:, None]
        out.append(y)
    return torch.stack(out)


def mafbm_paths(omega: torch.Tensor, Y: torch.Tensor, kind: str = "I") -> torch.Tensor:
    r""":math:`\hat B_H = \sum_k\omega_k(Y_k - Y_k(0))` (type I) or :math:`\sum_k\omega_kY_k` (type II), shape ``(times, n)``."""
    check_choice("fBM type", kind, KINDS)
    return ((Y - Y[:1]) if kind == "I" else Y) @ omega.double()


def riemann_liouville_paths(H, ts: torch.Tensor, dW: torch.Tensor) -> torch.Tensor:
    r"""Type-II fBM :math:`\frac1{\Gamma(H+\frac12)}\int_0^t(t-s)^{H-\frac12}dW_s` on the grid from the same increments
    (kernel at the step midpoints; for :math:`H > \frac12` the kernel is continuous). Shape ``(len(ts), n)``."""
    H = _check(H, "II")
    t = torch.as_tensor(ts, dtype=torch.float64)
    mid = (t[:-1] + t[1:]) / 2
    lag = (t[1:, None] - mid[None, :]).clamp(min=0)
    kern = torch.where(t[1:, None] > mid[None, :], lag ** (H - 0.5), torch.zeros_like(lag)) / torch.exp(
        torch.lgamma(H + 0.5)
    )
    return torch.cat([torch.zeros(1, dW.shape[1], dtype=torch.float64), kern @ dW])


def fbm_sde_rollout(
    x0: torch.Tensor,
    ts: torch.Tensor,
    omega: torch.Tensor,
    gammas: torch.Tensor,
    drift: Drift,
    diffusion: Diffusion,
    control: Control | None = None,
    kind: str = "I",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Euler–Maruyama for an SDE driven by MA-fBM, with an optional control (the variational posterior).

    State :math:`(X, Y_{1..K})` per latent dimension, one Brownian motion per dimension shared by its :math:`K` OU processes:

    .. math::
        dY_k = (-\gamma_kY_k + u)\,dt + dW, \qquad
        dX = b(X, t)\,dt + \sigma(X, t)\sum_k\omega_k\,dY_k,

    with :math:`u = 0` for the prior. By Girsanov the path KL between posterior and prior is
    :math:`\tfrac12\int\|u\|^2dt`, accumulated along the path. ``drift(x, t)``, ``diffusion(x, t)`` and
    ``control(x, t, y)`` (the library's ``(x, t)`` convention, with the OU state ``y`` after them) act on
    batches (``x (n, d)``, ``y (n, d, K)``). Returns ``(X path (steps + 1, n, d), KL (n,))``.
    """
    check_choice("fBM type", kind, KINDS)
    t = torch.as_tensor(ts, dtype=torch.float64)
    if t.dim() != 1 or len(t) < 2 or not (t.diff() > 0).all():
        raise ValueError("ts must be a strictly increasing grid of at least two times")
    n, d = x0.shape
    g = gammas.to(x0)
    w = omega.to(x0)
    K = len(g)
    if kind == "I":
        chol = torch.linalg.cholesky(1 / (gammas[:, None] + gammas[None, :]).double()).to(x0)
        y = randn(n, d, K, generator=generator, dtype=x0.dtype, device=x0.device) @ chol.T
    else:
        y = torch.zeros(n, d, K, dtype=x0.dtype, device=x0.device)
    x, kl, path = x0, torch.zeros(n, dtype=x0.dtype, device=x0.device), [x0]
    for t0, h in zip(t[:-1], t.diff(), strict=True):
        hf = float(h)
        dw = math.sqrt(hf) * randn(n, d, generator=generator, dtype=x0.dtype, device=x0.device)
        u = control(x, t0, y) if control is not None else torch.zeros_like(x)  # the posterior; u = 0: the prior
        dy = (-g * y + u[..., None]) * hf + dw[..., None]  # dY_k = (-gamma_k Y_k + u) dt + dW, one dW for all k
        x = x + drift(x, t0) * hf + diffusion(x, t0) * (dy @ w)  # dX = b dt + sigma sum_k omega_k dY_k
        y = y + dy
        kl = kl + 0.5 * (u**2).sum(1) * hf  # Girsanov: KL(q || p) = E int 1/2 |u|^2 dt
        path.append(x)
    return torch.stack(path), kl


def unit_omega(H, gammas: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    r"""Optimal type-I weights rescaled by :math:`V_H^{-1/2}`, so that :math:`\hat B_H` approximates *unit* fBM
    (:math:`\operatorname{Var}B_H(t) = t^{2H}`), the normalisation the bridge and Hurst experiments compare against."""
    return optimal_omega(H, gammas, T, "I") / v_h(H).sqrt()


def unit_fbm_covariance(ts: torch.Tensor, H) -> torch.Tensor:
    r""":math:`\tfrac12(t^{2H} + s^{2H} - |t-s|^{2H})`, the covariance of unit fractional Brownian motion."""
    return fbm_covariance(ts, H, "I") / v_h(H)


def sample_fbm(ts: torch.Tensor, H, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Exact unit fBM at times ``ts > 0`` by a Cholesky factor of its covariance, shape ``(n, len(ts))`` (float64)."""
    t = torch.as_tensor(ts, dtype=torch.float64)
    if (t <= 0).any():
        raise ValueError("sample_fbm needs times > 0 (B(0) = 0)")
    chol = torch.linalg.cholesky(unit_fbm_covariance(t, H) + 1e-12 * torch.eye(len(t), dtype=torch.float64))
    return randn(n, len(t), generator=generator, dtype=torch.float64) @ chol.T


def mafbm_log_likelihood(
    obs: torch.Tensor, ts: torch.Tensor, H, scale, noise_std: float, gammas: torch.Tensor, T: float = 1.0
) -> torch.Tensor:
    r"""Exact Gaussian log-likelihood of paths ``obs (n, len(ts))`` under :math:`x(t) = s\,\hat B_H(t) + \varepsilon`,
    :math:`\varepsilon\sim\mathcal N(0, \sigma_{obs}^2)`, with unit-normalised type-I MA-fBM: a linear-Gaussian model,
    so :math:`H` and :math:`s` can be fitted by gradient ascent through the closed-form weights. Shape ``(n,)``."""
    w = unit_omega(H, gammas, T)
    cov = scale**2 * mafbm_covariance(w, gammas, ts, "I") + noise_std**2 * torch.eye(len(ts), dtype=torch.float64)
    return torch.distributions.MultivariateNormal(torch.zeros(len(ts), dtype=torch.float64), cov).log_prob(obs.double())


# ---------------------------------------------------------------------------------------------
# The chapter's experiments: sweeps and checks of the closed forms, the fractional bridge and the
# recovery of the Hurst index.


def error_sweep(
    Ts: Iterable[float], Ks: Iterable[int], Hs: Iterable[float], gamma_max: float = 20.0, controls: bool = False
) -> list[dict[str, float]]:
    r"""Relative mean-square error :func:`approximation_error` of the optimal weights (types I and II) and of the
    quadrature rule :func:`riemann_omega` (type I) for every horizon ``T``, number
    of OU processes ``K`` (on :func:`gamma_grid`) and Hurst index ``H``: one row per ``(T, K, H)``.

    With ``controls``, three wrong weight vectors too (the chapter's negative controls): ``"type I, type-II
    weights"`` (the system of the wrong type solved, evaluated as type I), and ``"type I, weights for H + 0.1"`` and
    ``"type II, weights for H + 0.1"`` (the optimal weights of a Hurst index off by 0.1)."""
    rows = []
    for T in Ts:
        for K in Ks:
            g = gamma_grid(K, gamma_max)
            for H in Hs:
                row = {"T": T, "K": K, "H": H}
                for kind in KINDS:  # eq. A w = b, then the error of its solution
                    row[f"type {kind}, optimal"] = float(
                        approximation_error(optimal_omega(H, g, T, kind), H, g, T, kind)
                    )
                row["type I, Riemann"] = float(approximation_error(riemann_omega(H, g), H, g, T, "I"))
                if controls:
                    row["type I, type-II weights"] = float(
                        approximation_error(optimal_omega(H, g, T, "II"), H, g, T, "I")
                    )
                    for kind in KINDS:
                        row[f"type {kind}, weights for H + 0.1"] = float(
                            approximation_error(optimal_omega(H + 0.1, g, T, kind), H, g, T, kind)
                        )
                rows.append(row)
    return rows


def sample_mafbm(
    omega: torch.Tensor,
    gammas: torch.Tensor,
    ts: torch.Tensor,
    n: int,
    kind: str = "I",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""``n`` paths of :math:`\hat B_H` on the grid ``ts``: Brownian increments (:func:`brownian_increments`), the
    :math:`K` OU processes they drive (:func:`simulate_ou`, type I from its stationary law), their weighted sum
    (:func:`mafbm_paths`). Shape ``(len(ts), n)``, float64."""
    dW = brownian_increments(ts, n, generator)
    return mafbm_paths(omega, simulate_ou(gammas, ts, dW, kind, generator), kind)


def closed_form_mse(omega: torch.Tensor, H, gammas: torch.Tensor, T: float = 1.0, kind: str = "I") -> float:
    r"""The mean-square error :math:`\mathbb E\int_0^T(B_H-\hat B_H)^2dt` in closed form (not relative):
    :func:`approximation_error` times :func:`target_energy`."""
    return float(approximation_error(omega, H, gammas, T, kind) * target_energy(H, T, kind))


def simulated_error(
    H,
    gammas: torch.Tensor,
    T: float,
    steps: int,
    n: int,
    generator: torch.Generator | None = None,
    independent: bool = False,
) -> tuple[float, float]:
    r"""Type-II mean-square error :math:`\mathbb E\int_0^T(B_H-\hat B_H)^2dt` measured on ``n`` simulated paths, where
    the Riemann–Liouville process (:func:`riemann_liouville_paths`) and its approximation with the optimal weights
    share the same Brownian increments on ``steps`` steps, and the same error in closed form (:func:`closed_form_mse`).
    Returns ``(simulated, closed form)``.

    ``independent=True`` drives the approximation by increments independent of the exact path's (the negative
    control: the coupling through one Brownian motion forgotten)."""
    w = optimal_omega(H, gammas, T, "II")
    ts = torch.linspace(0, T, steps + 1, dtype=torch.float64)
    dW = brownian_increments(ts, n, generator)
    dW_approx = brownian_increments(ts, n, generator) if independent else dW
    err = riemann_liouville_paths(H, ts, dW) - mafbm_paths(w, simulate_ou(gammas, ts, dW_approx, "II"), "II")
    simulated = float(((err[1:] ** 2).sum(0) * (T / steps)).mean())  # right-endpoint rule in t
    return simulated, closed_form_mse(w, H, gammas, T, "II")


def variance_gap(approx_cov: torch.Tensor, exact_cov: torch.Tensor, ts: torch.Tensor) -> float:
    r"""Integrated relative gap of the variances, :math:`\int(\operatorname{Var}\hat B_H - \operatorname{Var}B_H)\,dt
    \big/\int\operatorname{Var}B_H\,dt`, from two covariance matrices on the grid ``ts`` (trapezoidal rule).

    By Cauchy–Schwarz its magnitude is at most :math:`\varepsilon + 2\sqrt\varepsilon`, with :math:`\varepsilon` the
    relative mean-square error of the approximation."""
    exact = torch.diagonal(exact_cov)
    return float(torch.trapezoid(torch.diagonal(approx_cov) - exact, ts) / torch.trapezoid(exact, ts))


def weight_gradient(H: float, gammas: torch.Tensor, T: float = 1.0, kind: str = "I", step: float = 1e-6) -> dict:
    r""":math:`\partial_H\bar\omega` for :math:`\bar\omega(H) = \sum_k\omega^*_k(H)`, the sum of the optimal weights (the
    diffusion coefficient of the prior SDE) :cite:`daems2024variational`, by autograd through the solve of
    :math:`A\omega = b` and through :func:`gammainc` and :func:`gammaincc_scaled`, and by a central finite difference of
    width ``2 step``; returns one row: ``H``, ``type``, ``T``, both derivatives and their relative difference.

    (The derivative of the error at the optimum would not do: by the envelope theorem it does not depend on
    :math:`\partial_H\omega^*`.)"""

    def objective(h):
        return optimal_omega(h, gammas, T, kind).sum()

    Hv = torch.tensor(H, dtype=torch.float64, requires_grad=True)
    (auto,) = torch.autograd.grad(objective(Hv), Hv)
    fd = (
        objective(torch.tensor(H + step, dtype=torch.float64)) - objective(torch.tensor(H - step, dtype=torch.float64))
    ) / (2 * step)
    return {
        "H": H,
        "type": kind,
        "T": T,
        "autograd": float(auto),
        "finite difference": float(fd),
        "relative difference": abs(float(auto - fd)) / abs(float(fd)),
    }


def _control_mlp(d_in: int, hidden: list[int], seed: int | None) -> MLP:
    """A tanh MLP with one output whose last layer starts at zero (:math:`u = 0`: the posterior starts at the prior).

    With ``seed`` its initial weights are those drawn after ``torch.manual_seed(seed)``, without moving the
    global generator."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        net = MLP(d_in, hidden, 1, activation=nn.Tanh)
    last = net[-1]
    assert isinstance(last, nn.Linear)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return net


class BridgeControl(nn.Module):
    r"""The control :math:`u_\phi(x, t, y)` of the fractional bridge: an MLP of :math:`(\sin t, \cos t, x, y_{1..K})`
    for one latent dimension (``x (n, 1)``, ``y (n, 1, K)``), zero at initialisation."""

    def __init__(self, K: int, hidden: int, seed: int | None = None):
        super().__init__()
        self.net = _control_mlp(3 + K, [hidden, hidden], seed)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        tt = float(t)
        features = [torch.full_like(x, math.sin(tt)), torch.full_like(x, math.cos(tt)), x, y[:, 0, :]]
        return self.net(torch.cat(features, 1))


def _zero_drift(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return 0 * x


def _unit_diffusion(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(x)


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def bridge_rollout(
    control: nn.Module,
    omega: torch.Tensor,
    gammas: torch.Tensor,
    ts: torch.Tensor,
    n: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``n`` controlled paths of :math:`dX = \sum_k\omega_k\,dY_k` from :math:`X_0 = 0` (no drift,
    :math:`\sigma\equiv1`, type I), on the control's device: :func:`fbm_sde_rollout`'s ``(path, KL)``."""
    x0 = torch.zeros(n, 1, device=_device_of(control))
    return fbm_sde_rollout(x0, ts, omega, gammas, _zero_drift, _unit_diffusion, control, generator=generator)


def train_bridge(
    control: nn.Module,
    omega: torch.Tensor,
    gammas: torch.Tensor,
    ts: torch.Tensor,
    noise_std: float,
    iters: int,
    lr: float,
    batch: int,
    generator: torch.Generator | None = None,
    desc: str | None = None,
) -> History:
    r"""Fit the control of a fractional bridge by maximising the ELBO :cite:`daems2024variational`.

    One noisy observation :math:`X_T = 0` (standard deviation ``noise_std``) at the end of ``ts``; with the
    Girsanov cost of :func:`fbm_sde_rollout`,

    .. math::
        -\text{ELBO} = \mathbb E_q\Big[\frac{X_T^2}{2\sigma_{obs}^2}\Big]
        + \mathbb E_q\Big[\tfrac12\int_0^T\|u_\phi\|^2dt\Big] + \text{const},

    estimated on ``batch`` paths per Adam step. Returns the :class:`~varbook.runtime.History` of the loss.
    """
    opt = torch.optim.Adam(control.parameters(), lr=lr)
    history = History()
    for it in range(iters) if desc is None else progress(range(iters), desc=desc):
        path, kl = bridge_rollout(control, omega, gammas, ts, batch, generator)
        loss = (path[-1, :, 0] ** 2 / (2 * noise_std**2) + kl).mean()  # -ELBO up to a constant
        descend(opt, loss, it, "negative ELBO")
        history.log(loss=loss.detach())
    return history


def bridge_paths(
    control: nn.Module,
    omega: torch.Tensor,
    gammas: torch.Tensor,
    ts: torch.Tensor,
    n: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n`` posterior paths of the trained bridge (:func:`bridge_rollout` without gradients), ``(len(ts), n)`` on the CPU."""
    with torch.no_grad():
        path, _ = bridge_rollout(control, omega, gammas, ts, n, generator)
    return path[:, :, 0].cpu()


def fbm_bridge_std(H, ts: torch.Tensor, T: float, noise_std: float) -> torch.Tensor:
    r"""Standard deviation of unit fBM at times ``ts`` given a noisy observation :math:`X_T = 0`, by Gaussian
    conditioning: :math:`\sqrt{k(t, t) - k(t, T)^2/(k(T, T) + \sigma_{obs}^2)}` with :math:`k` from
    :func:`unit_fbm_covariance` (the exact bridge the learned one should match)."""
    t = torch.as_tensor(ts, dtype=torch.float64)
    return _conditioned_std(unit_fbm_covariance(torch.cat([t, torch.tensor([T], dtype=torch.float64)]), H), noise_std)


def _conditioned_std(k: torch.Tensor, noise_std: float) -> torch.Tensor:
    r"""Standard deviations at the first ``len(k) - 1`` times of a centred Gaussian process with covariance ``k`` given
    a noisy observation of it at the last time: :math:`\sqrt{k(t,t) - k(t,T)^2/(k(T,T)+\sigma_{obs}^2)}`."""
    kt, kT = k[:-1, -1], k[-1, -1] + noise_std**2
    return (torch.diagonal(k[:-1, :-1]) - kt**2 / kT).clamp(min=0).sqrt()


def mafbm_bridge_std(
    omega: torch.Tensor, gammas: torch.Tensor, ts: torch.Tensor, T: float, noise_std: float
) -> torch.Tensor:
    r"""Standard deviation at times ``ts`` of the type-I MA-fBM :math:`\sum_k\omega_k(Y_k(t) - Y_k(0))` given a noisy
    observation :math:`X_T = 0`: the exact posterior of the Markov-approximate prior the bridge is trained on (Gaussian
    conditioning of :func:`mafbm_covariance`), which the learned bridge can match up to its control's capacity and
    the time step, whereas :func:`fbm_bridge_std` also contains the approximation's error."""
    t = torch.as_tensor(ts, dtype=torch.float64)
    k = mafbm_covariance(omega, gammas, torch.cat([t, torch.tensor([T], dtype=torch.float64)]), "I")
    return _conditioned_std(k, noise_std)


def noisy_fbm(ts: torch.Tensor, H, n: int, noise_std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Observations :math:`B_H(t) + \varepsilon` of ``n`` exact unit fBM paths (:func:`sample_fbm`) with i.i.d.
    :math:`\varepsilon\sim\mathcal N(0, \sigma^2)`, shape ``(n, len(ts))``, float64."""
    paths = sample_fbm(ts, H, n, generator)
    return paths + noise_std * randn(n, len(ts), generator=generator, dtype=torch.float64)


def fit_hurst(
    obs: torch.Tensor,
    ts: torch.Tensor,
    gammas: torch.Tensor,
    noise_std: float,
    iters: int,
    lr: float = 0.05,
    desc: str | None = None,
) -> History:
    r"""Learn the Hurst index and the scale of noisy paths ``obs (n, len(ts))`` by maximising the exact
    log-likelihood :func:`mafbm_log_likelihood` over :math:`H = \operatorname{sigmoid}(h)` and :math:`s = e^{\log s}`
    with Adam, from :math:`H = \frac12`, :math:`s = 1`; the gradient in :math:`H` flows through the closed-form weights.

    Returns a :class:`~varbook.runtime.History` of the loss (the mean negative log-likelihood before each step) and
    of ``H`` and ``scale`` after each step.
    """
    h_param = torch.zeros((), dtype=torch.float64, requires_grad=True)
    log_s = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([h_param, log_s], lr=lr)
    history = History()
    for it in range(iters) if desc is None else progress(range(iters), desc=desc):
        nll = -mafbm_log_likelihood(obs, ts, torch.sigmoid(h_param), log_s.exp(), noise_std, gammas).mean()
        descend(opt, nll, it, "negative log-likelihood")
        history.log(loss=nll.detach(), H=torch.sigmoid(h_param.detach()), scale=log_s.detach().exp())
    return history


def hurst_recovered(true: Iterable[float], learned: Iterable[float], tol: float = 0.1) -> bool:
    r"""Whether learned Hurst indices recover the true ones: in the same order (non-decreasing along increasing
    ``true``) and each within ``tol`` of its true value."""
    pairs = sorted(zip(true, learned, strict=True))
    ordered = all(a[1] <= b[1] for a, b in zip(pairs, pairs[1:], strict=False))
    return ordered and all(abs(h - t) <= tol for t, h in pairs)


class ObservationControl(nn.Module):
    r"""An amortised control :math:`u_\phi(x, t, y)` for paths observed at ``ts[obs_idx]``: an MLP of the state, the
    OU processes, the next observation :math:`o`, :math:`o - x` and the time left until it (``obs (n, m)`` holds each
    path's observations; the batch of the rollout is the batch of ``obs``). Zero at initialisation."""

    def __init__(
        self,
        obs: torch.Tensor,
        ts: torch.Tensor,
        obs_idx: torch.Tensor,
        K: int,
        hidden: int = 64,
        seed: int | None = None,
    ):
        super().__init__()
        self.net = _control_mlp(4 + K, [hidden, hidden], seed)
        self.obs, self.ts, self.obs_idx = obs, torch.as_tensor(ts, dtype=torch.float64), obs_idx
        self.next_obs = torch.searchsorted(obs_idx, torch.arange(len(self.ts) - 1), right=True)
        self.step_of = {float(t): k for k, t in enumerate(self.ts)}

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        j = int(self.next_obs[self.step_of[float(t)]])
        o = self.obs[:, j : j + 1]
        gap = torch.full_like(x, float(self.ts[self.obs_idx[j]] - t))
        return self.net(torch.cat([x, y[:, 0, :], o, o - x, gap], 1))


def fit_hurst_elbo(
    control: ObservationControl,
    gammas: torch.Tensor,
    iters: int,
    noise_std: float = 0.05,
    control_lr: float = 3e-3,
    lr: float = 0.02,
    generator: torch.Generator | None = None,
    desc: str | None = None,
    theta0: float | None = None,
) -> History:
    r"""Learn the Hurst index, the scale and the amortised control together by maximising the ELBO
    :cite:`daems2024variational`: the Gaussian log-likelihood of ``control.obs`` at ``control.ts[control.obs_idx]``
    minus the Girsanov cost of :func:`fbm_sde_rollout`, with the weights :math:`s\,\omega^*(H)/\sqrt{V_H}`
    differentiable in :math:`H = \operatorname{sigmoid}(h)` (from :math:`H = \frac12`, :math:`s = 1`).

    The prior has no drift unless ``theta0`` is given: then it is the fractional OU drift
    :math:`b(x) = -\theta x`, :math:`\theta = e^{\log\theta}` learned from :math:`\theta_0` with the same learning rate.

    Returns a :class:`~varbook.runtime.History` of the loss and of ``H`` and ``scale`` (and ``theta``) after each step.
    """
    h_param = torch.zeros((), requires_grad=True)
    log_s = torch.zeros((), requires_grad=True)
    params = [h_param, log_s]
    drift = _zero_drift
    if theta0 is not None:
        log_theta = torch.tensor(math.log(theta0), requires_grad=True)
        params.append(log_theta)

        def drift(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return -log_theta.exp() * x

    opt = torch.optim.Adam([{"params": control.parameters(), "lr": control_lr}, {"params": params, "lr": lr}])
    ts, obs, obs_idx = control.ts, control.obs, control.obs_idx
    T = float(ts[-1])
    history = History()
    for it in range(iters) if desc is None else progress(range(iters), desc=desc):
        w = (unit_omega(torch.sigmoid(h_param.double()), gammas, T) * log_s.double().exp()).float()
        x0 = torch.zeros(obs.shape[0], 1, device=obs.device)
        path, kl = fbm_sde_rollout(x0, ts, w, gammas, drift, _unit_diffusion, control, generator=generator)
        loglik = -((path[obs_idx, :, 0].T - obs) ** 2).sum(1) / (2 * noise_std**2)
        loss = (kl - loglik).mean()
        descend(opt, loss, it, "negative ELBO")
        extra = {} if theta0 is None else {"theta": log_theta.detach().exp()}
        history.log(loss=loss.detach(), H=torch.sigmoid(h_param.detach()), scale=log_s.detach().exp(), **extra)
    return history


def noisy_fou(
    ts: torch.Tensor, H, theta: float, n: int, noise_std: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""``n`` paths of the fractional Ornstein–Uhlenbeck process :math:`dX = -\theta X\,dt + dB_H`, :math:`X_0 = 0`,
    driven by exact unit fBM (:func:`sample_fbm`) on the grid ``ts`` (from ``ts[0] = 0``, Euler steps in the drift),
    plus i.i.d. :math:`\mathcal N(0, \sigma^2)` noise. Shape ``(n, len(ts))``, float64; the value at ``ts[0]`` is
    noise only."""
    t = torch.as_tensor(ts, dtype=torch.float64)
    if float(t[0]) != 0:
        raise ValueError("noisy_fou needs a grid that starts at 0")
    dB = sample_fbm(t[1:], H, n, generator).diff(dim=1, prepend=torch.zeros(n, 1, dtype=torch.float64))
    x, path = torch.zeros(n, dtype=torch.float64), [torch.zeros(n, dtype=torch.float64)]
    for h, db in zip(t.diff(), dB.T, strict=True):
        x = x - theta * x * h + db
        path.append(x)
    return torch.stack(path, 1) + noise_std * randn(n, len(t), generator=generator, dtype=torch.float64)


def hurst_by_elbo(
    H_values: Iterable[float],
    gammas: torch.Tensor,
    iters: int,
    n: int = 64,
    steps: int = 100,
    every: int = 5,
    noise_std: float = 0.05,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    desc: str | None = None,
) -> dict[float, float]:
    r"""For each true :math:`H`: ``n`` noisy unit-fBM paths observed every ``every`` steps of a grid of ``steps`` on
    :math:`[0, 1]` (:func:`noisy_fbm`), an :class:`ObservationControl` (initialised from ``seed``) and
    :func:`fit_hurst_elbo`. Returns the learned :math:`H` for each true value."""
    ts = torch.linspace(0, 1.0, steps + 1, dtype=torch.float64)
    obs_idx = torch.arange(every, steps + 1, every)
    learned = {}
    for H in H_values:
        obs = noisy_fbm(ts[obs_idx], H, n, noise_std, generator).float().to(device)
        control = ObservationControl(obs, ts, obs_idx, len(gammas), 64, seed).to(device)
        label = None if desc is None else f"{desc}, H = {H}"
        history = fit_hurst_elbo(control, gammas, iters, noise_std, generator=generator, desc=label)
        learned[H] = history.last("H")
    return learned


def fou_by_elbo(
    H: float,
    theta: float,
    gammas: torch.Tensor,
    iters: int,
    theta0: float = 0.5,
    T: float = 2.0,
    n: int = 64,
    steps: int = 100,
    every: int = 5,
    noise_std: float = 0.05,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    desc: str | None = None,
) -> History:
    r"""A learned drift: ``n`` noisy fractional OU paths (:func:`noisy_fou`, rate ``theta``, Hurst index ``H``)
    observed every ``every`` steps of a grid of ``steps`` on :math:`[0, T]`, and an MA-fBM latent SDE with drift
    :math:`-\theta x` fitted to them by the ELBO (:func:`fit_hurst_elbo` with ``theta0``): rate, Hurst index, scale
    and an amortised :class:`ObservationControl` (initialised from ``seed``) together. Returns the fit's history."""
    ts = torch.linspace(0, T, steps + 1, dtype=torch.float64)
    obs_idx = torch.arange(every, steps + 1, every)
    obs = noisy_fou(ts, H, theta, n, noise_std, generator)[:, obs_idx].float().to(device)
    control = ObservationControl(obs, ts, obs_idx, len(gammas), 64, seed).to(device)
    return fit_hurst_elbo(control, gammas, iters, noise_std, generator=generator, desc=desc, theta0=theta0)
