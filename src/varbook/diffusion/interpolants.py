r"""Stochastic interpolants between two densities :cite:`albergo2023stochastic`.

.. math::
    x_t = \alpha(t)\,x_0 + \beta(t)\,x_1 + \gamma(t)\,z, \qquad x_0\sim\rho_0,\ x_1\sim\rho_1,\ z\sim\mathcal N(0, I),

with :math:`\alpha(0) = \beta(1) = 1`, :math:`\alpha(1) = \beta(0) = 0` and :math:`\gamma(0) = \gamma(1) = 0`.
**Time runs the other way from the rest of** :mod:`varbook.diffusion`: here :math:`t = 0` is the base
:math:`\rho_0` and :math:`t = 1` the target :math:`\rho_1`, as in the paper. The one-sided linear interpolant
with a Gaussian base is the flow-matching path :class:`~varbook.diffusion.schedules.Linear` read at
:math:`s = 1 - t` (:meth:`Interpolant.as_schedule` is the adapter), so its drift is minus the
flow-matching velocity.

The fields are conditional expectations given :math:`x_t = x`:
:math:`b = \mathbb E[\dot\alpha x_0 + \dot\beta x_1 + \dot\gamma z]`, :math:`v = \mathbb E[\dot\alpha x_0 + \dot\beta x_1]`,
:math:`s = \nabla\log\rho_t`, and :math:`b = v - \gamma\dot\gamma\,s`. The probability-flow ODE is
:math:`\dot X = b` and, for any :math:`\epsilon \ge 0`, the SDE :math:`dX = (b + \epsilon s)\,dt + \sqrt{2\epsilon}\,dW`
has the same marginals.
"""

from __future__ import annotations

import math

import torch

from ..sde import solvers
from .gmm import GaussianMixture, component_terms, responsibilities
from .schedules import Linear, Schedule, _as_time, expand

PATHS = ("linear", "trig", "encdec", "one_sided_linear", "one_sided_trig", "mirror")
GAMMAS = ("brownian", "bsquared", "sinesquared", "zero")
KINDS = ("b", "v", "s", "eta")


def _t(t, like=None) -> torch.Tensor:
    return _as_time(t, like, "0 = base, 1 = target")


class Interpolant:
    r"""A path :math:`(\alpha, \beta)` and a latent scale :math:`\gamma`, with their time derivatives.

    ``path``: ``linear`` (:math:`1 - t, t`), ``trig`` (:math:`\sqrt{1-\gamma^2}\cos\frac{\pi t}2`,
    :math:`\sqrt{1-\gamma^2}\sin\frac{\pi t}2`), ``encdec`` (:math:`\cos^2\pi t` on :math:`x_0` before
    :math:`t = \frac12` and on :math:`x_1` after, with :math:`\gamma = \sin^2\pi t`), ``one_sided_linear`` and
    ``one_sided_trig`` (the base :math:`x_0` is itself the Gaussian, :math:`\gamma = 0`) and ``mirror``
    (:math:`x_1 + \gamma z`, from :math:`\rho_1` to itself). ``gamma``: ``brownian`` :math:`\sqrt{a\,t(1-t)}`,
    ``bsquared`` :math:`a\,t(1-t)`, ``sinesquared`` :math:`a\sin^2\pi t` or ``zero``.
    """

    def __init__(self, path: str = "linear", gamma: str | None = None, a: float = 1.0):
        if path not in PATHS:
            raise ValueError(f"unknown path {path!r}: use one of {', '.join(PATHS)}")
        self.one_sided = path.startswith("one_sided")
        if gamma is None:
            gamma = "zero" if self.one_sided else ("sinesquared" if path == "encdec" else "brownian")
        if gamma not in GAMMAS:
            raise ValueError(f"unknown gamma {gamma!r}: use one of {', '.join(GAMMAS)}")
        if self.one_sided and gamma != "zero":
            raise ValueError("a one-sided interpolant has no extra latent: use gamma='zero'")
        if not self.one_sided and gamma == "zero":
            raise ValueError(f"the {path} interpolant needs gamma > 0 inside (0, 1)")
        if path == "encdec" and (gamma != "sinesquared" or a != 1.0):
            raise ValueError("the encoder-decoder interpolant uses gamma = sin^2(pi t)")
        if a <= 0 or (path == "trig" and gamma == "sinesquared" and a >= 1):
            raise ValueError(f"gamma scale a must be positive (and below 1 for trig with sinesquared), got {a}")
        self.path, self.gamma_name, self.a = path, gamma, a

    def __repr__(self) -> str:
        return f"Interpolant({self.path!r}, {self.gamma_name!r})"

    # latent scale ------------------------------------------------------------------------------
    def gamma(self, t):
        t = _t(t)
        a, g = self.a, self.gamma_name
        if g == "brownian":
            return torch.sqrt(a * t * (1 - t))
        if g == "bsquared":
            return a * t * (1 - t)
        if g == "sinesquared":
            return a * torch.sin(math.pi * t) ** 2
        return torch.zeros_like(t)

    def d_gamma(self, t):
        t = _t(t)
        a, g = self.a, self.gamma_name
        if g == "brownian":
            return a * (1 - 2 * t) / (2 * torch.sqrt(a * t * (1 - t)))
        if g == "bsquared":
            return a * (1 - 2 * t)
        if g == "sinesquared":
            return a * math.pi * torch.sin(2 * math.pi * t)
        return torch.zeros_like(t)

    def gamma_dgamma(self, t):
        r""":math:`\gamma\dot\gamma`, written so that it stays finite at the ends for the Brownian :math:`\gamma`."""
        t = _t(t)
        if self.gamma_name == "brownian":
            return self.a * (1 - 2 * t) / 2
        return self.gamma(t) * self.d_gamma(t)

    # path ---------------------------------------------------------------------------------------
    def alpha(self, t):
        t = _t(t)
        p = self.path
        if p in ("linear", "one_sided_linear"):
            return 1 - t
        if p == "trig":
            return torch.sqrt(1 - self.gamma(t) ** 2) * torch.cos(math.pi * t / 2)
        if p == "one_sided_trig":
            return torch.cos(math.pi * t / 2)
        if p == "encdec":
            return torch.where(t < 0.5, torch.cos(math.pi * t) ** 2, torch.zeros_like(t))
        return torch.zeros_like(t)

    def beta(self, t):
        t = _t(t)
        p = self.path
        if p in ("linear", "one_sided_linear"):
            return t + 0 * t
        if p == "trig":
            return torch.sqrt(1 - self.gamma(t) ** 2) * torch.sin(math.pi * t / 2)
        if p == "one_sided_trig":
            return torch.sin(math.pi * t / 2)
        if p == "encdec":
            return torch.where(t > 0.5, torch.cos(math.pi * t) ** 2, torch.zeros_like(t))
        return torch.ones_like(t)

    def d_alpha(self, t):
        t = _t(t)
        p = self.path
        if p in ("linear", "one_sided_linear"):
            return -torch.ones_like(t)
        if p == "trig":
            r = torch.sqrt(1 - self.gamma(t) ** 2)
            return -self.gamma_dgamma(t) / r * torch.cos(math.pi * t / 2) - r * math.pi / 2 * torch.sin(math.pi * t / 2)
        if p == "one_sided_trig":
            return -math.pi / 2 * torch.sin(math.pi * t / 2)
        if p == "encdec":
            return torch.where(t < 0.5, -math.pi * torch.sin(2 * math.pi * t), torch.zeros_like(t))
        return torch.zeros_like(t)

    def d_beta(self, t):
        t = _t(t)
        p = self.path
        if p in ("linear", "one_sided_linear"):
            return torch.ones_like(t)
        if p == "trig":
            r = torch.sqrt(1 - self.gamma(t) ** 2)
            return -self.gamma_dgamma(t) / r * torch.sin(math.pi * t / 2) + r * math.pi / 2 * torch.cos(math.pi * t / 2)
        if p == "one_sided_trig":
            return math.pi / 2 * torch.cos(math.pi * t / 2)
        if p == "encdec":
            return torch.where(t > 0.5, -math.pi * torch.sin(2 * math.pi * t), torch.zeros_like(t))
        return torch.zeros_like(t)

    # the Gaussian latent: z with scale gamma, or the base x0 itself for one-sided interpolants -----
    def latent_scale(self, t):
        return self.alpha(t) if self.one_sided else self.gamma(t)

    def sample(self, t, x0: torch.Tensor, x1: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        r""":math:`x_t` for times ``t`` (scalar or ``(batch,)``); ``z`` is ignored by one-sided interpolants."""
        if x0.shape != x1.shape or (z is not None and z.shape != x0.shape):
            raise ValueError("x0, x1 (and z) must have the same shape")
        t = _t(t, x0)
        out = expand(self.alpha(t), x0) * x0 + expand(self.beta(t), x0) * x1
        if not self.one_sided:
            if z is None:
                raise ValueError(f"the {self.path} interpolant needs the latent z")
            out = out + expand(self.gamma(t), x0) * z
        return out

    def score_from_drift(self, x: torch.Tensor, b: torch.Tensor, t) -> torch.Tensor:
        r"""The score of a one-sided interpolant from its drift alone.

        With :math:`x = \alpha\,\mathbb E[x_0 \mid x] + \beta\,\mathbb E[x_1 \mid x]` and
        :math:`b = \dot\alpha\,\mathbb E[x_0 \mid x] + \dot\beta\,\mathbb E[x_1 \mid x]`,
        :math:`\mathbb E[x_0 \mid x] = (\dot\beta x - \beta b)/(\alpha\dot\beta - \dot\alpha\beta)` and
        :math:`s = -\mathbb E[x_0 \mid x]/\alpha` (singular at :math:`t = 1`, where :math:`\alpha = 0`).
        """
        if not self.one_sided:
            raise ValueError("the score follows from the drift only for one-sided interpolants")
        t = _t(t, x)
        a, bb, da, db = (expand(f(t), x) for f in (self.alpha, self.beta, self.d_alpha, self.d_beta))
        return -(db * x - bb * b) / (a * db - da * bb) / a

    def as_schedule(self) -> Schedule:
        """The diffusion schedule of a one-sided linear interpolant, in the library's reversed time :math:`s = 1 - t`."""
        if self.path != "one_sided_linear":
            raise ValueError("only the one-sided linear interpolant is a schedule of varbook.diffusion (Linear)")
        return Linear()


# -------------------------------------------------------------------------------------------------
class InterpolantMixtureField:
    r"""Exact :math:`b, v, s, \eta` and :math:`\log\rho_t` when both end points are Gaussian mixtures (independent coupling).

    Components are the pairs :math:`(j, k)`: mean :math:`\alpha\mu^0_j + \beta\mu^1_k`, covariance
    :math:`\alpha^2\Sigma^0_j + \beta^2\Sigma^1_k + \gamma^2 I`, weight :math:`w^0_jw^1_k`; every conditional
    expectation is then Gaussian conditioning within a component, averaged over responsibilities.
    """

    def __init__(self, interpolant: Interpolant, rho0: GaussianMixture, rho1: GaussianMixture):
        if rho0.dim != rho1.dim:
            raise ValueError(f"end points live in different dimensions: {rho0.dim} and {rho1.dim}")
        self.interpolant, self.rho0, self.rho1, self.dim = interpolant, rho0, rho1, rho0.dim

    def _parts(self, x: torch.Tensor, t):
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (batch, {self.dim}), got {tuple(x.shape)}")
        it = self.interpolant
        t = _t(t, x)
        per = t.dim() == 1
        shape = (-1, 1, 1) if per else ()
        a, b, g = (v.reshape(shape) if per else v for v in (it.alpha(t), it.beta(t), it.gamma(t)))
        m0, m1 = self.rho0.means.to(x), self.rho1.means.to(x)
        s0, s1 = self.rho0.covs.to(x), self.rho1.covs.to(x)
        j, k = m0.shape[0], m1.shape[0]
        means = (a * m0[:, None, :] if not per else a[:, :, None] * m0[None, :, None, :]) + (
            b * m1[None, :, :] if not per else b[:, :, None] * m1[None, None, :, :]
        )
        eye = torch.eye(self.dim, dtype=x.dtype, device=x.device)
        a2, b2, g2 = (v[..., None] ** 2 if per else v**2 for v in (a, b, g))
        covs = (a2[..., None] * s0[:, None] if per else a2 * s0[:, None]) + (
            b2[..., None] * s1[None] if per else b2 * s1[None]
        )
        covs = covs + (g2[..., None] if per else g2) * eye
        log_w = (torch.log(self.rho0.weights.to(x))[:, None] + torch.log(self.rho1.weights.to(x))[None]).reshape(-1)
        means = means.reshape(-1, j * k, self.dim) if per else means.reshape(j * k, self.dim)
        covs = covs.reshape(-1, j * k, self.dim, self.dim) if per else covs.reshape(j * k, self.dim, self.dim)
        log_comp, sol = component_terms(x, log_w, means, covs)
        r = responsibilities(log_comp)  # (B, J*K)
        sol_jk = sol.reshape(x.shape[0], j, k, self.dim)
        r_jk = r.reshape(x.shape[0], j, k)
        av, bv = (v.reshape(-1, 1) if per else v for v in (a, b))
        minus_score = torch.einsum("bc,bcd->bd", r, sol)
        # E[x0 | x] = sum_jk r_jk (mu0_j + alpha S0_j sol_jk), and the same for x1 with beta S1_k
        r_j, r_k = r_jk.sum(2), r_jk.sum(1)
        e_x0 = r_j @ m0 + av * torch.einsum("jde,bje->bd", s0, torch.einsum("bjk,bjke->bje", r_jk, sol_jk))
        e_x1 = r_k @ m1 + bv * torch.einsum("kde,bke->bd", s1, torch.einsum("bjk,bjke->bke", r_jk, sol_jk))
        return t, log_comp, e_x0, e_x1, minus_score

    def log_prob(self, x, t) -> torch.Tensor:
        r""":math:`\log\rho_t(x)`, shape ``(batch,)``."""
        _, log_comp, *_ = self._parts(x, t)
        return torch.logsumexp(log_comp, -1)

    def score(self, x, t) -> torch.Tensor:
        return -self._parts(x, t)[-1]

    def v(self, x, t) -> torch.Tensor:
        r""":math:`v = \mathbb E[\dot\alpha x_0 + \dot\beta x_1 \mid x_t = x]`."""
        t, _, e0, e1, _ = self._parts(x, t)
        it = self.interpolant
        return expand(it.d_alpha(t), x) * e0 + expand(it.d_beta(t), x) * e1

    def b(self, x, t) -> torch.Tensor:
        r""":math:`b = v - \gamma\dot\gamma s` (:math:`\dot\gamma\,\mathbb E[z \mid x]` written without the :math:`0\cdot\infty` at the ends)."""
        t, _, e0, e1, minus_score = self._parts(x, t)
        it = self.interpolant
        return (
            expand(it.d_alpha(t), x) * e0 + expand(it.d_beta(t), x) * e1 + expand(it.gamma_dgamma(t), x) * minus_score
        )

    def eta(self, x, t) -> torch.Tensor:
        r""":math:`-\mathbb E[n \mid x_t = x]` for the Gaussian latent :math:`n` (:math:`z`, or :math:`x_0` one-sided), the minimiser of the :math:`\eta` loss."""
        t, _, e0, _, minus_score = self._parts(x, t)
        if self.interpolant.one_sided:
            return -e0
        return -expand(self.interpolant.gamma(t), x) * minus_score


# -------------------------------------------------------------------------------------------------
def interpolant_losses(
    net,
    kind: str,
    interpolant: Interpolant,
    x0: torch.Tensor,
    x1: torch.Tensor,
    t: torch.Tensor | None = None,
    antithetic: bool = True,
    t_min: float = 1e-3,
    t_max: float = 1 - 1e-3,
) -> torch.Tensor:
    r"""Per-sample quadratic losses of :cite:`albergo2023stochastic`, shape ``(batch,)``; ``net(x, t)`` is the field.

    With :math:`n` the Gaussian latent (:math:`z`, or :math:`x_0` for one-sided interpolants) and :math:`c` its scale:

    * ``b``: :math:`\tfrac12|\hat b|^2 - (\dot\alpha x_0 + \dot\beta x_1 + \dot\gamma z)\cdot\hat b`;
    * ``v``: :math:`\tfrac12|\hat v|^2 - (\dot\alpha x_0 + \dot\beta x_1)\cdot\hat v`;
    * ``s``: :math:`\tfrac12|\hat s|^2 + c^{-1} n\cdot\hat s` (minimised by the score);
    * ``eta``: :math:`\tfrac12|\hat\eta|^2 + n\cdot\hat\eta` (minimised by :math:`-\mathbb E[n \mid x]`, so :math:`s = \hat\eta / c`).

    ``antithetic=True`` evaluates each term at :math:`x_t^{\pm}` (the latent with both signs) and averages the pair.
    ``t`` defaults to uniform draws on ``[t_min, t_max]``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown field {kind!r}: use one of {', '.join(KINDS)}")
    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
    n = x0.shape[0]
    if t is None:
        if not 0 <= t_min < t_max <= 1:
            raise ValueError(f"need 0 <= t_min < t_max <= 1, got {t_min}, {t_max}")
        t = t_min + (t_max - t_min) * torch.rand(n, device=x0.device, dtype=x0.dtype)
    it = interpolant
    col = lambda v: expand(v, x0)  # noqa: E731
    tt = _t(t, x0)
    da, db = col(it.d_alpha(tt)), col(it.d_beta(tt))
    if it.one_sided:
        latent, scale = x0, col(it.alpha(tt))
        base = col(it.beta(tt)) * x1
        fixed_target = db * x1  # the part of the target that does not flip with the latent
        flip_target = da * x0
    else:
        latent, scale = torch.randn_like(x0), col(it.gamma(tt))
        base = col(it.alpha(tt)) * x0 + col(it.beta(tt)) * x1
        fixed_target = da * x0 + db * x1
        flip_target = col(it.d_gamma(tt)) * latent if kind == "b" else torch.zeros_like(x0)

    signs = (1.0, -1.0) if antithetic else (1.0,)
    t_net = tt.expand(n) if tt.dim() == 0 else tt
    # both members of an antithetic pair go through the network in one batch
    x = torch.cat([base + sign * scale * latent for sign in signs])
    pred_all = net(x, t_net.repeat(len(signs)))
    if pred_all.shape != x.shape:
        raise ValueError(f"the network returned shape {tuple(pred_all.shape)} for x of shape {tuple(x.shape)}")

    def one(sign: float, pred: torch.Tensor) -> torch.Tensor:
        sq = 0.5 * (pred**2).flatten(1).sum(1)
        if kind in ("b", "v"):
            target = fixed_target + sign * flip_target if (kind == "b" or it.one_sided) else fixed_target
            return sq - (target * pred).flatten(1).sum(1)
        if kind == "s":
            return sq + (sign * latent * pred).flatten(1).sum(1) / scale.flatten()
        return sq + (sign * latent * pred).flatten(1).sum(1)

    terms = [one(sign, pred) for sign, pred in zip(signs, pred_all.split(n), strict=True)]
    return sum(terms) / len(terms)


# -------------------------------------------------------------------------------------------------
def sample_ode(b, x: torch.Tensor, ts, method: str = "heun", path: bool = False) -> torch.Tensor:
    r"""The probability-flow ODE :math:`\dot X = b(X, t)` from ``ts[0]`` to ``ts[-1]`` (Euler or Heun)."""
    if method not in ("euler", "heun"):
        raise ValueError(f"unknown ODE method {method!r}: use 'euler' or 'heun'")
    return (solvers.heun if method == "heun" else solvers.euler)(b, x, ts, path=path)


def sample_sde(b, s, x: torch.Tensor, ts, eps: float, generator: torch.Generator | None = None, path: bool = False):
    r"""The forward SDE :math:`dX = (b + \epsilon s)\,dt + \sqrt{2\epsilon}\,dW` by Euler–Maruyama; ``eps = 0`` is the ODE."""
    if eps < 0:
        raise ValueError(f"the diffusion level eps must be non-negative, got {eps}")
    if eps == 0:
        return solvers.euler(b, x, ts, path=path)
    return solvers.euler_maruyama(
        lambda y, t: b(y, t) + eps * s(y, t), lambda y, t: math.sqrt(2 * eps), x, ts, generator=generator, path=path
    )
