r"""Stochastic interpolants between two densities :cite:`albergo2023stochastic`.

.. math::
    x_t = \alpha(t)\,x_0 + \beta(t)\,x_1 + \gamma(t)\,z, \qquad x_0\sim\rho_0,\ x_1\sim\rho_1,\ z\sim\mathcal N(0, I),

with :math:`\alpha(0) = \beta(1) = 1`, :math:`\alpha(1) = \beta(0) = 0` and :math:`\gamma(0) = \gamma(1) = 0`.
**Time convention: base to target.** Time runs the other way from the rest of :mod:`varbook.diffusion`:
here :math:`t = 0` is the base :math:`\rho_0` (the Gaussian, for a generative model) and :math:`t = 1` the
target :math:`\rho_1` (the data), as in the paper; every time argument in this module is checked against
"0 = base, 1 = target". The one-sided linear interpolant with a Gaussian base is the flow-matching path
:class:`~varbook.diffusion.schedules.Linear` read at :math:`s = 1 - t`, and :meth:`Interpolant.as_schedule`
is the one adapter between the two conventions; its drift is therefore minus the flow-matching velocity.

The fields are conditional expectations given :math:`x_t = x`:
:math:`b = \mathbb E[\dot\alpha x_0 + \dot\beta x_1 + \dot\gamma z]`, :math:`v = \mathbb E[\dot\alpha x_0 + \dot\beta x_1]`,
:math:`s = \nabla\log\rho_t`, and :math:`b = v - \gamma\dot\gamma\,s`. The probability-flow ODE is
:math:`\dot X = b` and, for any :math:`\epsilon \ge 0`, the SDE :math:`dX = (b + \epsilon s)\,dt + \sqrt{2\epsilon}\,dW`
has the same marginals.
"""

from __future__ import annotations

import copy
import math

import torch

from ..data import Split, mnist5k, toy2d
from ..nn import SmallUNet, TimeMLP, fit_classifier, train_steps
from ..protocols import Drift, Score
from ..runtime import check_choice, progress, rand, randn, randn_like, randperm
from ..sde import solvers
from ..sde.likelihood import divergence
from .gmm import GaussianMixture, component_terms, responsibilities
from .metrics import energy_distance, frechet_distance, mmd
from .schedules import Linear, Schedule, as_time, expand

PATHS = ("linear", "trig", "encdec", "one_sided_linear", "one_sided_trig", "mirror")
r"""The paths :math:`(\alpha, \beta)` of :class:`Interpolant`."""
GAMMAS = ("brownian", "bsquared", "sinesquared", "zero")
r"""The latent scales :math:`\gamma` of :class:`Interpolant`."""
KINDS = ("b", "v", "s", "eta")
"""The fields :func:`interpolant_losses` can learn: drift, velocity, score and denoiser."""
ODE_METHODS = ("euler", "heun")
"""The fixed-grid ODE solvers of :func:`sample_ode`."""
SDE_MISTAKES = ("noise √ε", "no score")
r"""Deliberately wrong SDEs of :func:`sample_sde_mistaken`, the chapter's negative controls."""


def _t(t, like=None) -> torch.Tensor:
    return as_time(t, like, "0 = base, 1 = target")


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
        check_choice("path", path, PATHS)
        self.one_sided = path.startswith("one_sided")
        if gamma is None:
            gamma = "zero" if self.one_sided else ("sinesquared" if path == "encdec" else "brownian")
        check_choice("gamma", gamma, GAMMAS)
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
        out = expand(self.alpha(t), x0) * x0 + expand(self.beta(t), x0) * x1  # alpha x0 + beta x1
        if not self.one_sided:  # + gamma z
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
        """The diffusion schedule of a one-sided linear interpolant, in the library's reversed time :math:`s = 1 - t`.

        The adapter between the two time conventions: the interpolant at :math:`t` (0 = base, 1 = target)
        is the schedule at :math:`s = 1 - t` (0 = data, 1 = noise), the base's coefficient being the noise's:

        >>> it = Interpolant("one_sided_linear")
        >>> sch, t = it.as_schedule(), torch.tensor([0.25])
        >>> torch.equal(sch.alpha(1 - t), it.beta(t)), torch.equal(sch.sigma(1 - t), it.alpha(t))
        (True, True)
        """
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
        # the drift and the score of one SDE step ask for the same (x, t): compute the parts once
        t_key = torch.as_tensor(t).detach().clone()
        last = getattr(self, "_last", None)
        if (
            last is not None
            and last[0] is x
            and last[1] == (x._version, torch.is_grad_enabled())
            and last[2].shape == t_key.shape
            and bool(torch.equal(last[2], t_key))
        ):
            return last[3]
        parts = self._compute_parts(x, t)
        self._last = (x, (x._version, torch.is_grad_enabled()), t_key, parts)
        return parts

    def _compute_parts(self, x: torch.Tensor, t):
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (batch, {self.dim}), got {tuple(x.shape)}")
        t = _t(t, x)
        return (t, *(self._parts_1d if self.dim == 1 else self._parts_nd)(x, t))

    def _parts_nd(self, x: torch.Tensor, t: torch.Tensor):
        it = self.interpolant
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
        return log_comp, e_x0, e_x1, minus_score

    def _parts_1d(self, x: torch.Tensor, t: torch.Tensor):
        # one dimension: every covariance is a number, and the pairs (j, k) are the rows of (J*K, B) tensors
        # (the batch last, so that every operation runs along long rows)
        it = self.interpolant
        a, b, g = it.alpha(t), it.beta(t), it.gamma(t)  # scalars or (B,)
        m0, m1 = self.rho0.means.to(x)[:, 0], self.rho1.means.to(x)[:, 0]
        s0, s1 = self.rho0.covs.to(x)[:, 0, 0], self.rho1.covs.to(x)[:, 0, 0]
        j, k = len(m0), len(m1)
        m0_jk, m1_jk = m0.repeat_interleave(k)[:, None], m1.repeat(j)[:, None]  # row j * K + k: the pair (j, k)
        s0_jk, s1_jk = s0.repeat_interleave(k)[:, None], s1.repeat(j)[:, None]
        log_w = (torch.log(self.rho0.weights.to(x))[:, None] + torch.log(self.rho1.weights.to(x))[None]).reshape(-1, 1)
        var = a**2 * s0_jk + b**2 * s1_jk + g**2  # (J*K, 1) or (J*K, B)
        diff = x[:, 0] - (a * m0_jk + b * m1_jk)
        sol = diff / var  # C^{-1}(x - m), (J*K, B)
        log_comp = (log_w - 0.5 * (torch.log(var) + math.log(2 * math.pi))) - 0.5 * diff * sol
        r = torch.softmax(log_comp, 0)
        # sum_jk r_jk m0_j, sum_jk r_jk m1_k, then sum_jk r_jk sol_jk S0_j, S1_k and 1, as two small products
        means = torch.cat([m0_jk, m1_jk], 1).T @ r
        covs = torch.cat([s0_jk, s1_jk, torch.ones_like(s0_jk)], 1).T @ (r * sol)
        e_x0, e_x1 = means[0] + a * covs[0], means[1] + b * covs[1]
        return log_comp.T, e_x0[:, None], e_x1[:, None], covs[2][:, None]

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
    kind: str | tuple[str, ...],
    interpolant: Interpolant,
    x0: torch.Tensor,
    x1: torch.Tensor,
    t: torch.Tensor | None = None,
    antithetic: bool = True,
    t_min: float = 1e-3,
    t_max: float = 1 - 1e-3,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Per-sample quadratic losses of :cite:`albergo2023stochastic`, shape ``(batch,)``; ``net(x, t)`` is the field.

    With :math:`n` the Gaussian latent (:math:`z`, or :math:`x_0` for one-sided interpolants) and :math:`c` its scale:

    * ``b``: :math:`\tfrac12|\hat b|^2 - (\dot\alpha x_0 + \dot\beta x_1 + \dot\gamma z)\cdot\hat b`;
    * ``v``: :math:`\tfrac12|\hat v|^2 - (\dot\alpha x_0 + \dot\beta x_1)\cdot\hat v`;
    * ``s``: :math:`\tfrac12|\hat s|^2 + c^{-1} n\cdot\hat s` (minimised by the score);
    * ``eta``: :math:`\tfrac12|\hat\eta|^2 + n\cdot\hat\eta` (minimised by :math:`-\mathbb E[n \mid x]`, so :math:`s = \hat\eta / c`).

    ``antithetic=True`` evaluates each term at :math:`x_t^{\pm}` (the latent with both signs) and averages the pair.
    ``t`` defaults to uniform draws on ``[t_min, t_max]``; ``generator`` draws them and the latent
    (``None``: torch's global generator). A tuple of kinds learns several fields on the same draws with one
    stacked network (:class:`StackedNets`: ``net(x, t)`` of shape ``(len(kind), *x.shape)``); the losses are then
    ``(len(kind), batch)``.
    """
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    for k in kinds:
        check_choice("field", k, KINDS)
    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
    n = x0.shape[0]
    if t is None:
        if not 0 <= t_min < t_max <= 1:
            raise ValueError(f"need 0 <= t_min < t_max <= 1, got {t_min}, {t_max}")
        t = t_min + (t_max - t_min) * rand(n, generator=generator, device=x0.device, dtype=x0.dtype)
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
        latent, scale = randn_like(x0, generator), col(it.gamma(tt))
        base = col(it.alpha(tt)) * x0 + col(it.beta(tt)) * x1
        fixed_target = da * x0 + db * x1
        flip_target = col(it.d_gamma(tt)) * latent  # the latent's part of b's target (v has none)

    signs = (1.0, -1.0) if antithetic else (1.0,)
    t_net = tt.expand(n) if tt.dim() == 0 else tt
    # both members of an antithetic pair go through the network in one batch
    x = torch.cat([base + sign * scale * latent for sign in signs])  # x_t^+ (and x_t^-)
    pred_all = net(x, t_net.repeat(len(signs)))
    pred_all = pred_all[None] if isinstance(kind, str) else pred_all
    if pred_all.shape != (len(kinds), *x.shape):
        raise ValueError(f"the network returned shape {tuple(pred_all.shape)} for x of shape {tuple(x.shape)}")

    def one(kind: str, sign: float, pred: torch.Tensor) -> torch.Tensor:
        sq = 0.5 * (pred**2).flatten(1).sum(1)  # |field|^2 / 2, then the linear term of L_b, L_v, L_s or L_eta
        if kind in ("b", "v"):
            target = fixed_target + sign * flip_target if (kind == "b" or it.one_sided) else fixed_target
            return sq - (target * pred).flatten(1).sum(1)
        if kind == "s":
            return sq + (sign * latent * pred).flatten(1).sum(1) / scale.flatten()
        return sq + (sign * latent * pred).flatten(1).sum(1)

    losses = []
    for k, preds in zip(kinds, pred_all, strict=True):
        terms = [one(k, sign, pred) for sign, pred in zip(signs, preds.split(n), strict=True)]
        losses.append(torch.stack(terms).sum(0) / len(terms))  # the mean over the pair (or the one plain term)
    return losses[0] if isinstance(kind, str) else torch.stack(losses)


class StackedNets(torch.nn.Module):
    r"""Networks of one architecture run as one: ``forward(x, t)`` gives their outputs stacked, ``(K, batch, ...)``.

    Their parameters are stacked along a first axis (:func:`torch.func.stack_module_state`) and the forward pass is
    one :func:`torch.func.vmap` of :func:`torch.func.functional_call`, so that every layer is one batched product.
    No parameter is shared, so the gradient of a sum of per-network losses is each network's own gradient, and
    Adam, which works element by element, trains each network as it would train it alone. :meth:`unstack` writes
    the trained parameters back into the networks.
    """

    def __init__(self, nets):
        super().__init__()
        nets = list(nets)
        params, buffers = torch.func.stack_module_state(nets)
        if buffers:
            raise ValueError("StackedNets takes networks without buffers")
        self._nets = tuple(nets)  # a tuple: not registered, so the stack owns only the stacked parameters
        self._template = (copy.deepcopy(nets[0]).to("meta"),)
        self._names = list(params)
        self.stacked = torch.nn.ParameterList(torch.nn.Parameter(params[k]) for k in self._names)

    def forward(self, x: torch.Tensor, *args) -> torch.Tensor:
        def one(params, x, *args):
            return torch.func.functional_call(self._template[0], params, (x, *args))

        params = dict(zip(self._names, self.stacked, strict=True))
        return torch.func.vmap(one, in_dims=(0, None, *(None for _ in args)))(params, x, *args)

    def unstack(self) -> list[torch.nn.Module]:
        """The networks, holding the stacked parameters' current values."""
        with torch.no_grad():
            for i, net in enumerate(self._nets):
                for name, p in zip(self._names, self.stacked, strict=True):
                    net.get_parameter(name).copy_(p[i])
        return list(self._nets)


# -------------------------------------------------------------------------------------------------
def sample_ode(b: Drift, x: torch.Tensor, ts, method: str = "heun", path: bool = False) -> torch.Tensor:
    r"""The probability-flow ODE :math:`\dot X = b(X, t)` from ``ts[0]`` to ``ts[-1]`` (Euler or Heun)."""
    check_choice("ODE method", method, ODE_METHODS)
    return (solvers.heun if method == "heun" else solvers.euler)(b, x, ts, path=path)


def sample_sde(
    b: Drift, s: Score, x: torch.Tensor, ts, eps: float, generator: torch.Generator | None = None, path: bool = False
) -> torch.Tensor:
    r"""The forward SDE :math:`dX = (b + \epsilon s)\,dt + \sqrt{2\epsilon}\,dW` by Euler–Maruyama; ``eps = 0`` is the ODE."""
    if eps < 0:
        raise ValueError(f"the diffusion level eps must be non-negative, got {eps}")
    if eps == 0:
        return solvers.euler(b, x, ts, path=path)
    return solvers.euler_maruyama(
        lambda y, t: b(y, t) + eps * s(y, t), lambda y, t: math.sqrt(2 * eps), x, ts, generator=generator, path=path
    )


def sample_sde_mistaken(
    b: Drift,
    s: Score,
    x: torch.Tensor,
    ts,
    eps: float,
    mistake: str,
    generator: torch.Generator | None = None,
    path: bool = False,
) -> torch.Tensor:
    r"""A deliberately wrong version of :func:`sample_sde`, the negative control of a claim about the SDEs.

    * ``"noise √ε"``: :math:`dX = (b + \epsilon s)\,dt + \sqrt{\epsilon}\,dW`, the Fokker–Planck coefficient
      :math:`\epsilon` of :math:`\epsilon\Delta\rho` taken for the noise's variance instead of :math:`2\epsilon`;
    * ``"no score"``: :math:`dX = b\,dt + \sqrt{2\epsilon}\,dW`, the noise without the correction :math:`\epsilon s`.
    """
    check_choice("SDE mistake", mistake, SDE_MISTAKES)
    if eps <= 0:
        raise ValueError(f"a mistaken SDE needs a positive diffusion level eps, got {eps}")
    if mistake == "noise √ε":
        drift, noise = (lambda y, t: b(y, t) + eps * s(y, t)), math.sqrt(eps)
    else:
        drift, noise = b, math.sqrt(2 * eps)
    return solvers.euler_maruyama(drift, lambda y, t: noise, x, ts, generator=generator, path=path)


def sde_log_likelihood(
    b: Drift,
    s: Score,
    x: torch.Tensor,
    ts,
    eps: float | torch.Tensor,
    base_log_prob,
    generator: torch.Generator | None = None,
    martingale: bool = False,
    score_term: bool | torch.Tensor = True,
) -> torch.Tensor:
    r""":math:`\log\rho_1(x)` of the forward SDE :math:`dX = b_F\,dt + \sqrt{2\epsilon}\,dW`, :math:`b_F = b + \epsilon s`, by
    one path of the backward SDE per point :cite:`albergo2023stochastic`; shape ``(batch,)``.

    From :math:`Y_{t_1} = x`, the path runs back to :math:`t_0` by Euler–Maruyama with the backward drift
    :math:`b_B = b - \epsilon s`, :math:`Y_{t-h} = Y_t - h\,b_B(Y_t, t) + \sqrt{2\epsilon h}\,\xi`, and
    Itô's formula for :math:`\log\rho_t(Y_t)` gives

    .. math::
        \log\rho_1(x) = \log\rho_0(Y_0) - \int_0^1 \big(\nabla\cdot b_F + \epsilon|s|^2\big)(Y_t, t)\,dt
        - \int_0^1 \sqrt{2\epsilon}\,s(Y_t, t)\cdot dW_t .

    The last (Itô) integral has mean zero: without it (``martingale=False``, the paper's estimator) each path is an
    unbiased estimate of :math:`\log\rho_1(x)`; with it (``martingale=True``) and exact fields each path is exact up to
    the time step. ``eps = 0`` is the ODE's :math:`\log\rho_0(X_0) - \int\nabla\cdot b`, by Euler.
    ``score_term=False`` drops :math:`\epsilon|s|^2` (a negative control: the ODE's formula along an SDE path).
    ``eps`` and ``score_term`` may also be given per point, shape ``(batch,)``, to run several models as one batch.
    ``ts`` runs from :math:`t_1` down to :math:`t_0`; ``base_log_prob`` is :math:`\log\rho_0`; the divergence is exact.
    """
    ts = torch.as_tensor(ts, dtype=torch.float64)
    if ts.dim() != 1 or ts.numel() < 2 or not (ts.diff() < 0).all():
        raise ValueError("ts must be a decreasing grid from t1 (where x lives) to t0")
    eps, keep = (torch.as_tensor(v, dtype=x.dtype, device=x.device) for v in (eps, score_term))
    if (eps < 0).any():
        raise ValueError(f"the diffusion level eps must be non-negative, got {eps}")
    if any(v.dim() > 1 or (v.dim() == 1 and len(v) != len(x)) for v in (eps, keep)):
        raise ValueError("eps and score_term must be numbers or hold one value per point")
    e = eps[:, None] if eps.dim() else eps  # broadcasts against x (batch, d)
    y = x.detach()
    integral = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for t, t_next in zip(ts[:-1], ts[1:], strict=True):
        h = float(t - t_next)
        with torch.enable_grad():
            yr = y.requires_grad_(True)
            score = s(yr, t)
            forward = b(yr, t) + e * score  # b_F = b + eps s
            div = divergence(forward, yr)
        score, forward = score.detach(), forward.detach()
        rate = div.detach() + keep * eps * (score**2).sum(1)  # div b_F + eps |s|^2
        integral = integral + h * rate
        xi = randn_like(y, generator)
        noise = (2 * e * h).sqrt()  # sqrt(2 eps h)
        if martingale:
            integral = integral + (noise * score * xi).sum(1)
        y = (y.detach() - h * (forward - 2 * e * score) + noise * xi).detach()  # b_B = b_F - 2 eps s
    return base_log_prob(y) - integral


# -------------------------------------------------------------------------------------------------
# The experiments of the stochastic-interpolants chapter, in its order of random draws.


def as_field(net: torch.nn.Module) -> Drift:
    """A network ``net(x, t)`` that takes times of shape ``(batch,)`` as a field ``(x, t)`` that also takes a scalar time."""
    return lambda x, t: net(x, torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0]))


def sde_likelihood_sweep(
    b: Drift,
    s: Score,
    log_prob,
    x: torch.Tensor,
    eps_values,
    steps: int = 200,
    paths: int = 4,
    generator: torch.Generator | None = None,
    control_eps: float | None = None,
) -> list[dict[str, float | str]]:
    r"""The negative log-likelihood of points ``x`` under the SDE models at each diffusion level, by
    :func:`sde_log_likelihood` (the paper's estimator, ``paths`` backward paths per point, ``steps`` Euler–Maruyama
    steps on :math:`[0, 1]`), against the exact ``log_prob(x, 1)`` (``log_prob(·, 0)`` is the base).

    One row per level: the estimated and exact NLL (means over points), the error of the mean and its standard error
    over all paths, and their ratio :math:`z`. With ``control_eps``, a last row runs the negative control at that level:
    the ODE's formula along the SDE path (``score_term=False``, :math:`\epsilon|s|^2` forgotten). All levels run as
    one batch.
    """
    one, zero = torch.tensor(1.0, dtype=x.dtype), torch.tensor(0.0, dtype=x.dtype)
    exact = log_prob(x, one)
    ts = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    levels = [(float(e), True) for e in eps_values]
    if control_eps is not None:
        levels.append((float(control_eps), False))
    # every level (and the control) is one block of rows of a single batch: paths x points per level
    eps = torch.tensor([e for e, _ in levels], dtype=x.dtype).repeat_interleave(paths * len(x))
    right = torch.tensor([r for _, r in levels]).repeat_interleave(paths * len(x))
    est = sde_log_likelihood(
        b, s, x.repeat(len(levels) * paths, 1), ts, eps, lambda y: log_prob(y, zero), generator, score_term=right
    ).reshape(len(levels), paths, -1)
    rows = []
    for (eps_level, right_level), est_level in zip(levels, est, strict=True):
        err = est_level - exact
        se = float(err.std() / math.sqrt(err.numel()))
        rows.append(
            {
                "ε": eps_level,
                "estimator": "paper (∇·b_F + ε|s|²)" if right_level else "control: ∇·b_F only",
                "NLL, estimated": float(-est_level.mean()),
                "NLL, exact": float(-exact.mean()),
                "error of the mean (nats)": float(err.mean()),
                "standard error": se,
                "z = error / SE": float(err.mean()) / se,
            }
        )
    return rows


def flow_matching_peer(
    field: Drift, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, z: torch.Tensor, steps: int = 100
) -> dict[str, float]:
    r"""Meta's ``flow_matching`` library (the reference implementation of :cite:`lipman2023flow`) against this module on the one-sided linear interpolant.

    ``AffineProbPath(CondOTScheduler())`` is :math:`x_t = (1 - t)x_0 + t x_1` with target :math:`x_1 - x_0`, our
    ``Interpolant("one_sided_linear")`` with :math:`L_b`'s target :math:`\dot\alpha x_0 + \dot\beta x_1`. On the same
    batch ``(x0, x1, t)`` the row holds the largest differences of :math:`x_t`, of the target and of the per-sample
    loss of ``field`` (ours, :math:`L_b + \tfrac12|\text{target}|^2`, against half their squared error), and of ``steps``
    Euler steps of ``field`` from ``z`` (their ``ODESolver`` against :func:`sample_ode`), with both solvers' seconds.
    The negative control is our :math:`x_t` at :math:`1 - t`, the diffusion chapters' time convention.
    """
    import time

    from flow_matching.path import AffineProbPath
    from flow_matching.path.scheduler import CondOTScheduler
    from flow_matching.solver import ODESolver
    from flow_matching.utils import ModelWrapper

    class Wrapped(ModelWrapper):
        def forward(self, x: torch.Tensor, t: torch.Tensor, **extras) -> torch.Tensor:
            return field(x, t)

    it = Interpolant("one_sided_linear")
    theirs = AffineProbPath(scheduler=CondOTScheduler()).sample(x_0=x0, x_1=x1, t=t)
    xt = it.sample(t, x0, x1)
    target = expand(it.d_alpha(t), x0) * x0 + expand(it.d_beta(t), x0) * x1
    with torch.no_grad():
        ours_loss = interpolant_losses(field, "b", it, x0, x1, t=t, antithetic=False) + 0.5 * (target**2).sum(1)
        their_loss = 0.5 * ((field(theirs.x_t, t) - theirs.dx_t) ** 2).sum(1)
        start = time.perf_counter()
        ours_x = sample_ode(field, z, torch.linspace(0, 1, steps + 1, dtype=torch.float64), method="euler")
        ours_s = time.perf_counter() - start
        solver = ODESolver(velocity_model=Wrapped(torch.nn.Identity()))
        start = time.perf_counter()
        their_x = solver.sample(x_init=z, step_size=1.0 / steps, method="euler", time_grid=torch.tensor([0.0, 1.0]))
        their_s = time.perf_counter() - start
    return {
        "x_t (max |diff|)": float((xt - theirs.x_t).abs().max()),
        "target (max |diff|)": float((target - theirs.dx_t).abs().max()),
        "loss (max |diff|)": float((ours_loss - their_loss).abs().max()),
        "Euler samples (max |diff|)": float((ours_x - their_x).abs().max()),
        "ours, seconds": ours_s,
        "flow_matching, seconds": their_s,
        "control: x_t at 1 - t (max |diff|)": float((it.sample(1 - t, x0, x1) - theirs.x_t).abs().max()),
    }


def normal_quantiles(n: int, dim: int = 1, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""The ``n`` midpoint quantiles :math:`\Phi^{-1}\big((i + \tfrac12)/n\big)` of :math:`\mathcal N(0, 1)`, shape ``(n, dim)``
    (the same column repeated).

    Stratified starting points for a one-dimensional base: an ODE carries them to a sample whose mode shares have no
    sampling noise, so a :math:`W_1` of the end points measures the dynamics, not the luck of the draw.
    """
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    q = math.sqrt(2) * torch.erfinv(2 * u - 1)
    return q[:, None].expand(n, dim).to(dtype).contiguous()


def w1_to_mixture(samples: torch.Tensor, mixture: GaussianMixture, grid: torch.Tensor | None = None) -> float:
    r""":math:`W_1 = \int |F_n - F|\,dx` between the empirical law of 1-D ``samples`` and a 1-D Gaussian ``mixture``.

    The integral is a Riemann sum on ``grid`` (default: 24001 points on :math:`[-6, 6]`), with the mixture's CDF
    :math:`F(x) = \sum_k w_k\,\tfrac12\big(1 + \operatorname{erf}((x - \mu_k)/\sqrt{2\sigma_k^2})\big)`.
    """
    if mixture.dim != 1:
        raise ValueError(f"W1 by CDFs needs a one-dimensional mixture, got dimension {mixture.dim}")
    grid = torch.linspace(-6, 6, 24001, dtype=torch.float64) if grid is None else grid
    cdf = sum(
        w * 0.5 * (1 + torch.erf((grid - m[0]) / math.sqrt(2 * c[0, 0])))
        for w, m, c in zip(mixture.weights, mixture.means, mixture.covs, strict=True)
    )
    s = samples.flatten().sort().values
    f_n = torch.searchsorted(s, grid, right=True).double() / len(s)
    return float((f_n - cdf).abs().sum() * (grid[1] - grid[0]))


def w1_mistaken(
    b: Drift,
    s: Score,
    x: torch.Tensor,
    ts: torch.Tensor,
    target: GaussianMixture,
    mistake: str,
    eps: float = 1.0,
    generator: torch.Generator | None = None,
) -> float:
    """:func:`w1_to_mixture` of the end points of the mistaken SDE :func:`sample_sde_mistaken` at one level ``eps``."""
    return w1_to_mixture(sample_sde_mistaken(b, s, x, ts, eps, mistake, generator=generator), target)


def w1_sweep(
    b: Drift,
    s: Score,
    x: torch.Tensor,
    ts: torch.Tensor,
    eps_values,
    target: GaussianMixture,
    generator: torch.Generator | None = None,
    keep: int = 0,
    desc: str | None = None,
) -> tuple[dict[float, float], dict[float, torch.Tensor]]:
    r"""For each diffusion level :math:`\epsilon`, run the SDE :math:`dX = (b + \epsilon s)\,dt + \sqrt{2\epsilon}\,dW`
    from ``x`` along ``ts`` (:func:`sample_sde`; the ODE at :math:`\epsilon = 0`) and measure :func:`w1_to_mixture`
    of the end points to the 1-D ``target``.

    Returns the :math:`W_1` per level and, when ``keep > 0``, the paths ``(len(ts), keep, d)`` of the first ``keep``
    samples. The levels draw from ``generator`` in turn.
    """
    w1, paths = {}, {}
    for eps in progress(list(eps_values), desc=desc, disable=desc is None):
        out = sample_sde(b, s, x, ts, eps, generator=generator, path=keep > 0)
        w1[eps] = w1_to_mixture(out[-1] if keep > 0 else out, target)
        if keep > 0:
            paths[eps] = out[:, :keep]
    return w1, paths


def antithetic_variances(
    score: Score,
    interpolant: Interpolant,
    x0: torch.Tensor,
    x1: torch.Tensor,
    ts,
    generator: torch.Generator | None = None,
) -> list[dict[str, float]]:
    r"""Variance over samples of the per-sample score loss :math:`L_s` at fixed times, plain and with antithetic pairs.

    One row per time: both variances and the ratio plain / antithetic halved, since a pair costs two evaluations
    of ``score``; then the same ratio for the negative control, a pair whose second latent is an independent draw
    instead of the first with its sign flipped (the plain loss averaged over two latents: for a one-sided
    interpolant the base samples ``x0`` shifted by one row, for a two-sided one a fresh :math:`z`). ``generator``
    draws the latents of a two-sided interpolant (a one-sided one draws nothing).
    """
    rows = []
    for tv in ts:
        t = torch.full((len(x0),), tv, dtype=x0.dtype)
        plain = interpolant_losses(score, "s", interpolant, x0, x1, t=t, antithetic=False, generator=generator)
        pair = interpolant_losses(score, "s", interpolant, x0, x1, t=t, antithetic=True, generator=generator)
        other = x0.roll(1, 0) if interpolant.one_sided else x0  # an independent latent for the control's pair
        second = interpolant_losses(score, "s", interpolant, other, x1, t=t, antithetic=False, generator=generator)
        independent = (plain + second) / 2
        rows.append(
            {
                "t": tv,
                "variance, plain": float(plain.var()),
                "variance, antithetic pair": float(pair.var()),
                "ratio / 2 (equal cost)": float(plain.var() / pair.var()) / 2,
                "ratio / 2, independent pair (control)": float(plain.var() / independent.var()) / 2,
            }
        )
    return rows


def train_interpolant_fields(
    interpolant: Interpolant,
    x0: torch.Tensor,
    x1: torch.Tensor,
    kinds=("b", "v", "eta"),
    hidden: int = 96,
    depth: int = 3,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 2e-3,
    seed: int = 0,
) -> dict[str, Drift]:
    r"""One :class:`~varbook.nn.TimeMLP` per field in ``kinds``, each trained on its quadratic loss
    (:func:`interpolant_losses`, antithetic) with independent pairs :math:`(x_0, x_1)`.

    Each step draws a minibatch of rows of ``x0`` and ``x1`` and re-pairs the ``x0`` at random, so the
    pairs are drawn independently. The networks train side by side as one :class:`StackedNets` on the same
    draws, each on its own loss: what each would see if trained alone from torch's global generator seeded
    with ``seed``, which draws the (common) initial weights, the minibatches, the pairings, the times and the
    latents. Returns the fields (:func:`as_field`).
    """

    def shuffled(x: torch.Tensor) -> torch.Tensor:
        return x[randperm(len(x), device=x.device)]

    kinds = tuple(kinds)
    torch.manual_seed(seed)
    first = TimeMLP(x0.shape[1], hidden, depth).to(x0.device)
    nets = StackedNets([copy.deepcopy(first) for _ in kinds])
    train_steps(
        nets,
        lambda a, c: interpolant_losses(nets, kinds, interpolant, shuffled(a), c).mean(1).sum(),  # one loss each
        (x0, x1),
        steps,
        batch_size,
        lr=lr,
        desc=f"{', '.join(kinds)} networks",
    )
    return {kind: as_field(net) for kind, net in zip(kinds, nets.unstack(), strict=True)}


def transport(
    b: Drift,
    s: Score,
    x: torch.Tensor,
    ode_steps: int = 100,
    sde_steps: int = 200,
    eps_values=(0.1, 0.5, 1.0),
    generator: torch.Generator | None = None,
    t_margin: float = 1e-3,
) -> dict[str, torch.Tensor]:
    r"""Carry base samples ``x`` to the target: the ODE :math:`\dot X = b` (Heun, ``ode_steps`` on :math:`[0, 1]`) and
    the SDEs at each :math:`\epsilon` (Euler–Maruyama, ``sde_steps`` on :math:`[t_m, 1 - t_m]`, where :math:`s`
    is finite). Keys ``"ODE"`` and ``"SDE ε=<eps>"``; results on the CPU."""
    with torch.no_grad():
        out = {"ODE": sample_ode(b, x, torch.linspace(0, 1, ode_steps + 1, dtype=torch.float64)).cpu()}
        ts = torch.linspace(t_margin, 1 - t_margin, sde_steps + 1, dtype=torch.float64)
        for eps in eps_values:
            out[f"SDE ε={eps}"] = sample_sde(b, s, x, ts, eps, generator=generator).cpu()
    return out


def transport_distances(
    samples: dict[str, torch.Tensor], target: torch.Tensor, bandwidth: float = 0.2
) -> dict[str, dict[str, float]]:
    """The MMD (Gaussian kernel of ``bandwidth``) and the energy distance of each sample set to held-out ``target`` samples."""
    return {
        name: {"MMD": float(mmd(pts, target, bandwidth)), "energy distance": float(energy_distance(pts, target))}
        for name, pts in samples.items()
    }


def identity_discrepancy(
    b: Drift,
    v: Drift,
    s: Score,
    interpolant: Interpolant,
    x0: torch.Tensor,
    x1: torch.Tensor,
    ts=(0.1, 0.3, 0.5, 0.7, 0.9),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    wrong_sign: bool = False,
) -> dict[float, float]:
    r"""How well three separately learned fields obey :math:`b = v - \gamma\dot\gamma s`, at each time in ``ts``:
    :math:`\mathbb E|b - (v - \gamma\dot\gamma s)|^2 / \mathbb E|b|^2` on fresh interpolant samples from the pairs
    ``(x0, x1)`` and latents drawn from ``generator`` (float64 on the CPU, then float32 on ``device``).
    ``wrong_sign=True`` measures the negative control :math:`b = v + \gamma\dot\gamma s` instead."""
    sign = -1.0 if wrong_sign else 1.0
    out = {}
    with torch.no_grad():
        for tv in ts:
            t = torch.tensor(tv, dtype=torch.float64)
            z = randn(len(x0), x0.shape[1], dtype=torch.float64, generator=generator)
            xt = interpolant.sample(t, x0.double(), x1.double(), z).float().to(device)
            lhs = b(xt, t)
            rhs = v(xt, t) - sign * float(interpolant.gamma_dgamma(t)) * s(xt, t)  # b = v - γγ' s
            out[tv] = float(((lhs - rhs) ** 2).sum(1).mean() / (lhs**2).sum(1).mean())
    return out


def checkerboard_variants(
    variants: dict[str, Interpolant] | None = None,
    n_train: int = 100000,
    eval_n: int = 5000,
    steps: tuple[int, ...] = (7000, 3000, 3000),
    ode_steps: int = 200,
    sde_steps: int = 400,
    seed: int = 0,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[dict[str, dict[str, float]], float]:
    r"""The repository's checkerboard setting: a 4×256 drift network per interpolant, base :math:`\mathcal N(0, I)`,
    batch 2000, learning rate 2e-3, ``steps[i]`` steps for the i-th variant (the first, one-sided, is the repository's).

    Each variant's ODE samples (and, for a one-sided interpolant, its SDE at :math:`\epsilon = 0.5`, with the score
    computed from the drift) are scored by the (V-statistic) energy distance to held-out samples. Returns the rows and
    the floor: the energy distance between two independent data samples of that size.

    Each row also scores the negative controls: the ODE with the drift read in the diffusion chapters' time
    convention, :math:`b(x, 1 - t)`, and (one-sided) the SDE without the score term (:func:`sample_sde_mistaken`,
    ``"no score"``), whose noise comes from a generator of its own seeded with ``seed``.
    """
    if variants is None:
        variants = {
            "one-sided linear (repository)": Interpolant("one_sided_linear"),
            "two-sided linear, brownian γ": Interpolant("linear", "brownian"),
            "two-sided linear, bsquared γ": Interpolant("linear", "bsquared"),
        }
    if len(steps) != len(variants):
        raise ValueError(f"need one training length per variant, got {len(steps)} for {len(variants)}")
    cb = toy2d("checkerboard", n_train, seed=seed + 7).to(device)
    cb_te = toy2d("checkerboard", eval_n, seed=seed + 1000)
    floor = float(energy_distance(toy2d("checkerboard", eval_n, seed=seed + 2000), cb_te, unbiased=False))
    rows = {}
    control = torch.Generator().manual_seed(seed)
    for (name, it), n_steps in zip(variants.items(), steps, strict=True):
        torch.manual_seed(seed)
        net = TimeMLP(2, 256, 4).to(device)
        train_steps(
            net,
            lambda c, net=net, it=it: interpolant_losses(net, "b", it, randn_like(c), c).mean(),
            (cb,),
            n_steps,
            2000,
            lr=2e-3,
            desc=name,
        )
        b = as_field(net)
        z = randn(eval_n, 2, generator=generator, device=device)
        grid = torch.linspace(0, 1, ode_steps + 1, dtype=torch.float64)
        with torch.no_grad():
            out = sample_ode(b, z, grid).cpu()
            row = {"ODE energy distance (V)": float(energy_distance(out, cb_te, unbiased=False))}
            reversed_ = sample_ode(lambda x, t, b=b: b(x, 1 - t), z, grid).cpu()  # the control: t read as 1 - t
            row["ODE, time reversed (control)"] = float(energy_distance(reversed_, cb_te, unbiased=False))
            if it.one_sided:

                def score(x, t, b=b, it=it):
                    return it.score_from_drift(x, b(x, t), t)

                ts = torch.linspace(0, 0.99, sde_steps + 1, dtype=torch.float64)
                sde = sample_sde(b, score, z, ts, 0.5, generator=generator).cpu()
                row["SDE ε=0.5 energy distance (V)"] = float(energy_distance(sde, cb_te, unbiased=False))
                wrong = sample_sde_mistaken(b, score, z, ts, 0.5, "no score", generator=control).cpu()
                row["SDE ε=0.5, no score (control)"] = float(energy_distance(wrong, cb_te, unbiased=False))
        rows[name] = row | {"ratio to two data samples": row["ODE energy distance (V)"] / floor}
    return rows, floor


def digits_transport(
    steps: int = 4000,
    batch_size: int = 128,
    unet_base: int = 32,
    n_samples: int = 500,
    ode_steps: int = 100,
    sde_steps: int = 200,
    judge_steps: int = 3000,
    mnist: Split | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    r"""A one-sided linear interpolant from :math:`\mathcal N(0, I)` to MNIST-5k digits (padded to 32×32), with a
    :class:`~varbook.nn.SmallUNet` drift; ODE (Heun, ``ode_steps``) and SDE (:math:`\epsilon = 0.5`, ``sde_steps``
    on :math:`[0, 0.99]`) samples, under the keys ``"ODE (Heun, <n> steps)"`` and ``"SDE ε=0.5 (<n> steps)"``.
    ``mnist`` defaults to MNIST-5k split by ``seed``.

    Returns the Fréchet distance of each sampler's digits to the test digits in the features of a fixed
    MLP classifier (:func:`~varbook.nn.fit_classifier`, ``judge_steps`` steps), and the samples
    ``(n_samples, 1, 32, 32)``. The networks draw from torch's global generator, seeded with ``seed``
    before the UNet; the starting noise and the SDE's increments come from ``generator``.
    """
    one_sided = Interpolant("one_sided_linear")
    split = mnist5k(seed=seed) if mnist is None else mnist
    x_img = (split.x_train * 2 - 1).to(device)
    judge = fit_classifier(x_img, split.y_train.to(device), steps=judge_steps)
    x_img32 = torch.nn.functional.pad(x_img.reshape(-1, 1, 28, 28), (2, 2, 2, 2), value=-1.0)
    torch.manual_seed(seed)
    unet = SmallUNet(1, unet_base).to(device)
    train_steps(
        unet,
        lambda c: interpolant_losses(unet, "b", one_sided, randn_like(c), c).mean(),
        (x_img32,),
        steps,
        batch_size,
        lr=1e-3,
        desc="digits b-network",
    )
    b = as_field(unet)
    z = randn(n_samples, 1, 32, 32, generator=generator, device=device)
    with torch.no_grad():
        samples = {
            f"ODE (Heun, {ode_steps} steps)": sample_ode(
                b, z, torch.linspace(0, 1, ode_steps + 1, dtype=torch.float64)
            ),
            f"SDE ε=0.5 ({sde_steps} steps)": sample_sde(
                b,
                lambda x, t: one_sided.score_from_drift(x, b(x, t), t),
                z,
                torch.linspace(0, 0.99, sde_steps + 1, dtype=torch.float64),
                0.5,
                generator=generator,
            ),
        }
        test_features = judge.features((split.x_test * 2 - 1).to(device))
        fd = {
            k: float(
                frechet_distance(judge.features(v[:, 0, 2:30, 2:30].reshape(n_samples, -1).clamp(-1, 1)), test_features)
            )
            for k, v in samples.items()
        }
    return fd, samples
