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

import math

import numpy as np
import torch

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


class _GammaincP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, x):
        ctx.save_for_backward(a, x)
        return torch.special.gammainc(a, x)

    @staticmethod
    def backward(ctx, grad):
        a, x = ctx.saved_tensors
        ga = gx = None
        if ctx.needs_input_grad[0]:
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
    if kind not in KINDS:
        raise ValueError(f"unknown fBM type {kind!r}: use 'I' or 'II'")
    return H


def _system(H: torch.Tensor, gammas: torch.Tensor, T: float, kind: str):
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
    A, b = _system(H, gammas, T, kind)
    if ridge:
        A = A + ridge * torch.eye(len(b), dtype=A.dtype)
    return torch.linalg.solve(A, b)


def approximation_error(omega: torch.Tensor, H, gammas: torch.Tensor, T: float = 1.0, kind: str = "I") -> torch.Tensor:
    r"""Relative mean-square error :math:`\mathbb E\int_0^T(B_H-\hat B_H)^2dt \big/ \int_0^T\operatorname{Var}B_H\,dt` in closed form."""
    H = _check(H, kind)
    A, b = _system(H, gammas, T, kind)
    energy = target_energy(H, T, kind)
    mse = omega @ A @ omega - 2 * b @ omega + energy
    return mse.clamp(min=0) / energy


def riemann_omega(H, gammas: torch.Tensor) -> torch.Tensor:
    r"""The quadrature weights of the Harms–Stefanovits representation, for :math:`H < \tfrac12` and type I.

    :math:`B_H(t) = \int_0^\infty(Y_\gamma(t)-Y_\gamma(0))\,\mu(d\gamma)` with
    :math:`\mu(d\gamma) = \gamma^{-(H+\frac12)}d\gamma/(\Gamma(H+\frac12)\Gamma(\frac12-H))`; on the geometric grid a
    Riemann sum in :math:`\log\gamma` gives :math:`\omega_k = \mu`-density :math:`\times\,\gamma_k\Delta\log\gamma`.
    (For :math:`H > \frac12` the representation needs an integration by parts; it is not implemented.)
    """
    H = _check(H, "I")
    if not (H < 0.5).all():
        raise ValueError("the Riemann rule is implemented for H < 1/2 only")
    g = gammas.double()
    if len(g) < 2:
        raise ValueError("the Riemann rule needs at least two rates")
    step = math.log(float(g[1] / g[0]))
    c = 1 / (torch.exp(torch.lgamma(H + 0.5)) * torch.exp(torch.lgamma(0.5 - H)))
    return c * g ** (0.5 - H) * step


def fbm_covariance(ts: torch.Tensor, H, kind: str = "I") -> torch.Tensor:
    r"""Exact covariance of :math:`B_H` at times ``ts``: :math:`\frac{V_H}2(t^{2H}+s^{2H}-|t-s|^{2H})` for type I;
    for type II by quadrature of :math:`\frac{1}{\Gamma(H+\frac12)^2}\int_0^{\min(t,s)}(t-u)^{H-\frac12}(s-u)^{H-\frac12}du`."""
    H = _check(H, kind)
    t = torch.as_tensor(ts, dtype=torch.float64)
    ti, tj = t[:, None], t[None, :]
    if kind == "I":
        return v_h(H) / 2 * (ti ** (2 * H) + tj ** (2 * H) - (ti - tj).abs() ** (2 * H))
    w = torch.as_tensor(_NODES, dtype=torch.float64)
    q = torch.as_tensor(_WEIGHTS, dtype=torch.float64)
    m = torch.minimum(ti, tj)[..., None]
    # u = m (1 - v^{1/(H+1/2)}) puts the endpoint singularity of (m - u)^{H - 1/2} into a smooth Jacobian
    p = 1 / (H + 0.5)
    u = m * (1 - w**p)
    du = m * p * w ** (p - 1)
    f = (ti[..., None] - u).clamp(min=0) ** (H - 0.5) * (tj[..., None] - u).clamp(min=0) ** (H - 0.5) * du
    return (f * q).sum(-1) / torch.exp(2 * torch.lgamma(H + 0.5))


def mafbm_covariance(omega: torch.Tensor, gammas: torch.Tensor, ts: torch.Tensor, kind: str = "I") -> torch.Tensor:
    r"""Exact covariance of the approximation :math:`\hat B_H` at times ``ts`` (OU cross-covariances in closed form)."""
    if kind not in KINDS:
        raise ValueError(f"unknown fBM type {kind!r}: use 'I' or 'II'")
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
    return torch.randn(len(h), n, generator=generator, dtype=torch.float64) * h.sqrt()[:, None]


def simulate_ou(
    gammas: torch.Tensor, ts: torch.Tensor, dW: torch.Tensor, kind: str = "I", generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""The :math:`K` OU processes :math:`dY_k = -\gamma_kY_k\,dt + dW` driven by the **same** increments ``dW (steps, n)``.

    Each step decays exactly and adds the increment at the step's midpoint,
    :math:`Y \mapsto e^{-\gamma h}Y + e^{-\gamma h/2}\Delta W` (accurate while :math:`\gamma_{max}h \ll 1`). Type I starts
    from the stationary law :math:`\mathcal N(0, C)`, :math:`C_{ij} = 1/(\gamma_i+\gamma_j)`; type II from 0.
    Returns ``(len(ts), n, K)``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown fBM type {kind!r}: use 'I' or 'II'")
    t = torch.as_tensor(ts, dtype=torch.float64)
    if dW.shape[0] != len(t) - 1:
        raise ValueError(f"{dW.shape[0]} increments for a grid of {len(t)} times")
    g = gammas.double()
    n, K = dW.shape[1], len(g)
    y = torch.zeros(n, K, dtype=torch.float64)
    if kind == "I":
        y = (
            torch.randn(n, K, generator=generator, dtype=torch.float64)
            @ torch.linalg.cholesky(1 / (g[:, None] + g[None, :])).T
        )
    out = [y]
    for h, dw in zip(t.diff(), dW, strict=True):
        y = torch.exp(-g * h) * y + torch.exp(-g * h / 2) * dw[:, None]
        out.append(y)
    return torch.stack(out)


def mafbm_paths(omega: torch.Tensor, Y: torch.Tensor, kind: str = "I") -> torch.Tensor:
    r""":math:`\hat B_H = \sum_k\omega_k(Y_k - Y_k(0))` (type I) or :math:`\sum_k\omega_kY_k` (type II), shape ``(times, n)``."""
    if kind not in KINDS:
        raise ValueError(f"unknown fBM type {kind!r}: use 'I' or 'II'")
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
    drift,
    diffusion,
    control=None,
    kind: str = "I",
    generator: torch.Generator | None = None,
):
    r"""Euler–Maruyama for an SDE driven by MA-fBM, with an optional control (the variational posterior).

    State :math:`(X, Y_{1..K})` per latent dimension, one Brownian motion per dimension shared by its :math:`K` OU processes:

    .. math::
        dY_k = (-\gamma_kY_k + u)\,dt + dW, \qquad
        dX = b(X, t)\,dt + \sigma(X, t)\sum_k\omega_k\,dY_k,

    with :math:`u = 0` for the prior. By Girsanov the path KL between posterior and prior is
    :math:`\tfrac12\int\|u\|^2dt`, accumulated along the path. ``drift(x, t)``, ``diffusion(x, t)`` and
    ``control(t, x, y)`` act on batches (``x (n, d)``, ``y (n, d, K)``). Returns ``(X path (steps + 1, n, d), KL (n,))``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown fBM type {kind!r}: use 'I' or 'II'")
    t = torch.as_tensor(ts, dtype=torch.float64)
    if t.dim() != 1 or len(t) < 2 or not (t.diff() > 0).all():
        raise ValueError("ts must be a strictly increasing grid of at least two times")
    n, d = x0.shape
    g = gammas.to(x0)
    w = omega.to(x0)
    K = len(g)
    if kind == "I":
        chol = torch.linalg.cholesky(1 / (gammas[:, None] + gammas[None, :]).double()).to(x0)
        y = torch.randn(n, d, K, generator=generator, dtype=x0.dtype).to(x0.device) @ chol.T
    else:
        y = torch.zeros(n, d, K, dtype=x0.dtype, device=x0.device)
    x, kl, path = x0, torch.zeros(n, dtype=x0.dtype, device=x0.device), [x0]
    for t0, h in zip(t[:-1], t.diff(), strict=True):
        hf = float(h)
        dw = math.sqrt(hf) * torch.randn(n, d, generator=generator, dtype=x0.dtype).to(x0.device)
        u = control(t0, x, y) if control is not None else torch.zeros_like(x)
        dy = (-g * y + u[..., None]) * hf + dw[..., None]
        x = x + drift(x, t0) * hf + diffusion(x, t0) * (dy @ w)
        y = y + dy
        kl = kl + 0.5 * (u**2).sum(1) * hf
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
    return torch.randn(n, len(t), generator=generator, dtype=torch.float64) @ chol.T


def mafbm_log_likelihood(
    obs: torch.Tensor, ts: torch.Tensor, H, scale, noise_std: float, gammas: torch.Tensor, T: float = 1.0
) -> torch.Tensor:
    r"""Exact Gaussian log-likelihood of paths ``obs (n, len(ts))`` under :math:`x(t) = s\,\hat B_H(t) + \varepsilon`,
    :math:`\varepsilon\sim\mathcal N(0, \sigma_{obs}^2)`, with unit-normalised type-I MA-fBM: a linear-Gaussian model,
    so :math:`H` and :math:`s` can be fitted by gradient ascent through the closed-form weights. Shape ``(n,)``."""
    w = unit_omega(H, gammas, T)
    cov = scale**2 * mafbm_covariance(w, gammas, ts, "I") + noise_std**2 * torch.eye(len(ts), dtype=torch.float64)
    return torch.distributions.MultivariateNormal(torch.zeros(len(ts), dtype=torch.float64), cov).log_prob(obs.double())
