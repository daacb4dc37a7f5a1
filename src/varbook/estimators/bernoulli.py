r"""Gradients through stochastic binary neurons :cite:`bengio2013estimating`.

A stochastic binary neuron has pre-activation :math:`a`, firing probability
:math:`p=\sigma(a)` and output :math:`h=\mathbb 1[z<p]`, :math:`z\sim U(0,1)`. Its output has no
useful derivative, so training needs an estimator of :math:`\partial\,\mathbb E[L]/\partial a`:

* ``reinforce``: the unbiased score-function estimator :math:`(h-p)(L-\bar L)`
  :cite:`williams1992simple`, here through a surrogate whose gradient it is;
* ``st_id`` / ``st_sigmoid``: straight-through, copying :math:`\partial L/\partial h` onto
  :math:`a`, either as is or times :math:`\sigma'(a)` :cite:`hinton2012neural`;
* ``sts``: stochastic times smooth, :math:`h=b\sqrt p` with :math:`b\sim\mathrm{Bern}(\sqrt p)`;
* ``noisy_relu``: the noisy rectifier :math:`h=\max(0,a+sz)`, :math:`z\sim\mathcal N(0,1)`.

Everything is vectorised: the leading dimensions of ``a`` are batch or sample dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions.utils import clamp_probs

from ..protocols import Baseline
from ..runtime import check_choice, rand_like, randn, randn_like
from .variance import gradient_stats

ESTIMATORS = ("reinforce", "st_id", "st_sigmoid", "sts", "noisy_relu")
"""The estimators of :class:`BinaryStochastic`: REINFORCE, the two straight-through variants, STS, noisy ReLU."""
ST_VARIANTS = ("st_id", "st_sigmoid")
"""The straight-through variants of :func:`straight_through`: identity or sigmoid-derivative backward pass."""


def _uniform(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return rand_like(like, generator)


def bernoulli_log_prob(h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    r"""Elementwise :math:`\log P(h\mid a)=h\,a-\mathrm{softplus}(a)`; its derivative in :math:`a` is :math:`h-\sigma(a)`."""
    return h * a - F.softplus(a)


def sample_binary(a: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Draw :math:`h=\mathbb 1[z<\sigma(a)]` with no gradient."""
    with torch.no_grad():
        return (_uniform(a, generator) < torch.sigmoid(a)).to(a.dtype)


def straight_through(
    a: torch.Tensor, variant: str = "st_sigmoid", generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""Straight-through binary neuron.

    Forward: :math:`h=\mathbb 1[z<\sigma(a)]`. Backward: ``st_id`` passes
    :math:`\partial L/\partial h` to :math:`a` unchanged; ``st_sigmoid`` multiplies it by
    :math:`\sigma'(a)`, as if :math:`h` had been :math:`\sigma(a)`.
    """
    check_choice("straight-through variant", variant, ST_VARIANTS)
    p = torch.sigmoid(a)
    hard = (_uniform(p, generator) < p.detach()).to(a.dtype)  # NaN probabilities give 0, never an error
    smooth = a if variant == "st_id" else p
    # eq. st-straight-through: the value is `hard`, the gradient that of `smooth`
    return hard + (smooth - smooth.detach())


def stochastic_times_smooth(
    a: torch.Tensor, generator: torch.Generator | None = None, p_min: float = 1e-4
) -> torch.Tensor:
    r"""Stochastic-times-smooth unit: :math:`h=b\sqrt{p}`, :math:`b\sim\mathrm{Bern}(\sqrt p)`.

    :math:`\mathbb E[h]=p`, the output is exactly 0 with probability :math:`1-\sqrt p`, and the
    gradient flows through :math:`\sqrt p` only: :math:`\partial h/\partial a=b\,\sigma'(a)/(2\sqrt p)`.
    :math:`p` is clipped below at ``p_min`` because :math:`d\sqrt p/dp` is unbounded at 0.
    """
    sqrt_p = torch.sigmoid(a).clamp_min(p_min).sqrt()
    b = (_uniform(sqrt_p, generator) < sqrt_p.detach()).to(a.dtype)  # b ~ Bern(sqrt p)
    return b * sqrt_p  # eq. st-sts: the gradient flows through sqrt(p) only


def noisy_rectifier(a: torch.Tensor, std: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Noisy rectifier :math:`h=\max(0,a+s z)`, :math:`z\sim\mathcal N(0,1)`, trained by ordinary backprop."""
    z = randn_like(a, generator)
    return F.relu(a + std * z)


def fire_probability(a: torch.Tensor, estimator: str, noise_std: float = 1.0, p_min: float = 1e-4) -> torch.Tensor:
    r"""Probability that the unit's output is non-zero (the rate a sparsity penalty acts on).

    :math:`\sigma(a)` for binary units, :math:`\sqrt{\sigma(a)}` for STS, and
    :math:`\Phi(a/s)` for the noisy rectifier.

    >>> fire_probability(torch.zeros(2), "st_sigmoid"), fire_probability(torch.zeros(2), "noisy_relu")
    (tensor([0.5000, 0.5000]), tensor([0.5000, 0.5000]))
    """
    check_choice("estimator", estimator, ESTIMATORS)
    if estimator in ("reinforce", "st_id", "st_sigmoid"):
        return torch.sigmoid(a)
    if estimator == "sts":
        return torch.sigmoid(a).clamp_min(p_min).sqrt()
    if noise_std <= 0:  # the noisy rectifier
        return (a > 0).to(a.dtype)
    return 0.5 * (1 + torch.erf(a / (noise_std * math.sqrt(2))))


class BinaryStochastic(nn.Module):
    """A layer of stochastic units whose training gradient comes from ``estimator``.

    In training mode the output is random. In evaluation mode the noise is off: binary units
    and STS output their deterministic threshold (a unit fires when its firing probability
    exceeds 1/2, STS then outputs :math:`\\sqrt p`), the noisy rectifier outputs
    :math:`\\max(0,a)`.

    With ``estimator="reinforce"`` the output carries no gradient; call
    :meth:`reinforce_surrogate` with the per-example loss and add it to the loss.
    """

    def __init__(self, estimator: str, noise_std: float = 1.0, p_min: float = 1e-4):
        super().__init__()
        self.estimator = check_choice("estimator", estimator, ESTIMATORS)
        self.noise_std = noise_std
        self.p_min = p_min
        self._log_prob: torch.Tensor | None = None
        self._score: torch.Tensor | None = None

    def extra_repr(self) -> str:
        return f"estimator={self.estimator!r}"

    def fire_probability(self, a: torch.Tensor) -> torch.Tensor:
        return fire_probability(a, self.estimator, self.noise_std, self.p_min)

    def forward(self, a: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        est = self.estimator
        if not self.training:
            if est == "noisy_relu":
                return F.relu(a)
            fire = (self.fire_probability(a) > 0.5).to(a.dtype)
            return fire * torch.sigmoid(a).clamp_min(self.p_min).sqrt() if est == "sts" else fire
        if est == "reinforce":
            h = sample_binary(a, generator)
            self._log_prob = bernoulli_log_prob(h, a)
            self._score = (h - torch.sigmoid(a)).detach()
            return h
        if est in ("st_id", "st_sigmoid"):
            return straight_through(a, est, generator)
        if est == "sts":
            return stochastic_times_smooth(a, generator, self.p_min)
        return noisy_rectifier(a, self.noise_std, generator)

    def reinforce_surrogate(
        self, loss: torch.Tensor, baseline: Baseline | float | torch.Tensor | None = None
    ) -> torch.Tensor:
        r"""Surrogate term whose gradient in :math:`a` is the REINFORCE estimate, averaged over the batch.

        ``loss`` holds the per-example loss :math:`L_n` (shape ``(N,)``). ``baseline`` is ``None``,
        a scalar, a per-unit tensor, or a baseline object with ``value()`` and ``update(score, loss)``
        (see :mod:`varbook.estimators.baselines`); an object is read before it is updated, so the
        baseline never depends on the current sample. Returns
        :math:`\frac1N\sum_{n,i}(L_n-\bar L_i)\log P(h_{ni}\mid a_{ni})` with the weights detached.
        """
        if self.estimator != "reinforce":
            raise RuntimeError(f"reinforce_surrogate needs estimator='reinforce', not {self.estimator!r}")
        if self._log_prob is None or self._score is None:
            raise RuntimeError("call the layer in training mode before reinforce_surrogate")
        log_prob, score = self._log_prob, self._score
        self._log_prob = self._score = None
        loss = loss.detach().reshape(loss.shape[0], *([1] * (log_prob.dim() - 1)))
        b: float | torch.Tensor
        if baseline is None:
            b = 0.0
        elif isinstance(baseline, Baseline):
            b = baseline.value()
            baseline.update(score, loss.flatten())
        else:
            b = baseline
        # d/da of (L - b) log P(h | a) is (h - p)(L - b): eq. st-reinforce
        return ((loss - b) * log_prob).sum() / log_prob.shape[0]


# ----------------------------------------------------------------------------------------
# Exact gradients by enumeration (small toy problems)
# ----------------------------------------------------------------------------------------


def enumerate_binary(n: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """All :math:`2^n` binary vectors of length ``n`` as a ``(2**n, n)`` tensor (first unit = most significant bit)."""
    if not 0 < n <= 20:
        raise ValueError(f"enumeration needs 0 < n <= 20 units, got {n}")
    codes = torch.arange(2**n, device=device)
    bits = (codes[:, None] >> torch.arange(n - 1, -1, -1, device=device)) & 1
    return bits.to(dtype)


def exact_expectation(a: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    r""":math:`\mathbb E_{h\sim\mathrm{Bern}(\sigma(a))}[L(h)]` by summing over all :math:`2^n` states (differentiable in ``a``)."""
    states = enumerate_binary(a.shape[-1], a.dtype, a.device)
    prob = bernoulli_log_prob(states, a).sum(-1).exp()
    return (prob * loss_fn(states)).sum()


def exact_gradient(a: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    r"""The exact gradient :math:`\partial\,\mathbb E[L]/\partial a` by enumeration."""
    a = a.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(exact_expectation(a, loss_fn), a)
    return grad


def exact_sts_gradient(
    a: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor], p_min: float = 1e-4
) -> torch.Tensor:
    r"""The exact gradient of the STS objective :math:`\mathbb E_{b\sim\mathrm{Bern}(\sqrt p)}[L(b\sqrt p)]`."""
    a = a.detach().requires_grad_(True)
    sqrt_p = torch.sigmoid(a).clamp_min(p_min).sqrt()
    states = enumerate_binary(a.shape[-1], a.dtype, a.device)
    prob = torch.where(states > 0, sqrt_p, 1 - sqrt_p).prod(-1)
    (grad,) = torch.autograd.grad((prob * loss_fn(states * sqrt_p)).sum(), a)
    return grad


def reinforce_moments(
    a: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor], baseline: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Exact mean and per-coordinate variance of :math:`(h-p)(L(h)-\bar L)` by enumeration.

    ``baseline`` is a scalar or a per-unit tensor that does not depend on :math:`h`.
    """
    a = a.detach()
    states = enumerate_binary(a.shape[-1], a.dtype, a.device)
    prob = bernoulli_log_prob(states, a).sum(-1).exp()[:, None]
    g = (states - torch.sigmoid(a)) * (loss_fn(states)[:, None] - torch.as_tensor(baseline, dtype=a.dtype))
    mean = (prob * g).sum(0)
    return mean, (prob * g**2).sum(0) - mean**2


def gradient_samples(
    estimator: str,
    a: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    n_samples: int,
    generator: torch.Generator | None = None,
    baseline: Baseline | float | torch.Tensor | None = None,
    noise_std: float = 1.0,
) -> torch.Tensor:
    """``n_samples`` independent estimates of the gradient of the expected loss in ``a``, shape ``(n_samples, n)``.

    ``loss_fn`` maps a batch of unit outputs ``(R, n)`` to losses ``(R,)``. Each row is one
    single-sample estimate, computed in one vectorised backward pass through the same layer
    the networks use.
    """
    layer = BinaryStochastic(estimator, noise_std=noise_std).train()
    a_rep = a.detach().expand(n_samples, -1).clone().requires_grad_(True)
    h = layer(a_rep, generator)
    loss = loss_fn(h)
    if estimator == "reinforce":
        surrogate = layer.reinforce_surrogate(loss, baseline) * n_samples
    else:
        surrogate = loss.sum()
    (grad,) = torch.autograd.grad(surrogate, a_rep)
    return grad


def sample_estimators(
    estimators: dict[str, tuple[str, Baseline | float | torch.Tensor | None]],
    a: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    n_samples: int,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """:func:`gradient_samples` of several estimators at the same logits, drawn in the order given.

    ``estimators`` maps a label to ``(estimator, baseline)`` (``baseline`` is used by
    ``reinforce`` only; ``None`` means no baseline). Returns a label to ``(n_samples, n)`` map.

    >>> toy = QuadraticToy(3, generator=torch.Generator().manual_seed(0))
    >>> out = sample_estimators({"ST": ("st_sigmoid", None)}, torch.zeros(3, dtype=torch.float64), toy, 5)
    >>> out["ST"].shape
    torch.Size([5, 3])
    """
    return {
        label: gradient_samples(name, a, loss_fn, n_samples, generator, baseline=baseline)
        for label, (name, baseline) in estimators.items()
    }


def concrete_samples(
    a: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    temperature: float,
    n_samples: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""``n_samples`` single-sample gradients of :math:`\mathbb E[L(\tilde h)]` under the Concrete relaxation.

    :math:`\tilde h=\sigma\big((\log u-\log(1-u)+\log p-\log(1-p))/\tau\big)`, :math:`u\sim U(0,1)`,
    :math:`p=\sigma(a)` :cite:`maddison2017concrete,jang2017categorical`, differentiated pathwise.
    It computes what ``torch.distributions.RelaxedBernoulli(tau, logits=a).rsample()`` does
    (the same clamping, the same draws for the same random state), with a ``generator``.
    The gradient is biased for the binary objective :math:`\mathbb E[L(h)]`.
    """
    logits = a.detach().expand(n_samples, -1).clone().requires_grad_(True)
    p = clamp_probs(torch.sigmoid(logits))
    u = clamp_probs(_uniform(logits, generator))
    x = (u.log() - (-u).log1p() + p.log() - (-p).log1p()) / temperature  # logistic noise
    finfo = torch.finfo(x.dtype)
    h = torch.sigmoid(x).clamp(min=finfo.tiny, max=1.0 - finfo.eps)
    (grad,) = torch.autograd.grad(loss_fn(h).sum(), logits)
    return grad


class QuadraticToy(nn.Module):
    r"""The toy loss :math:`L(h)=\lVert W h - y\rVert^2/m + c`, smooth in :math:`h` so that straight-through applies.

    ``offset`` :math:`c` shifts the mean loss, which is what a baseline must remove.
    """

    W: torch.Tensor
    y: torch.Tensor

    def __init__(
        self,
        n: int = 10,
        m: int = 6,
        offset: float = 0.0,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
    ):
        super().__init__()
        self.register_buffer("W", randn(m, n, generator=generator, dtype=dtype) / math.sqrt(n))
        self.register_buffer("y", randn(m, generator=generator, dtype=dtype))
        self.offset = offset

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return ((h @ self.W.T - self.y) ** 2).mean(-1) + self.offset


class BinaryStack(nn.Module):
    r"""``depth`` layers of ``width`` stochastic binary units, the first driven by free logits :math:`\theta`.

    :math:`h_1\sim\mathrm{Bern}(\sigma(\theta))`, :math:`h_{l+1}\sim\mathrm{Bern}(\sigma(W_l h_l+c_l))`,
    loss :math:`L(h_D)`. :meth:`exact_loss` sums over every configuration with transition
    matrices (:math:`2^{\text{width}}` states per layer), so the exact gradient in :math:`\theta` is
    available at any depth; :meth:`sample_loss` runs the network with an estimator.
    """

    W: torch.Tensor
    c: torch.Tensor

    def __init__(
        self,
        width: int,
        depth: int,
        loss_fn: Callable[[torch.Tensor], torch.Tensor],
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        scale: float = 2.0,
    ):
        super().__init__()
        self.width, self.depth, self.loss_fn = width, depth, loss_fn
        self.theta = nn.Parameter(randn(width, generator=generator, dtype=dtype))
        self.register_buffer(
            "W", scale * randn(depth - 1, width, width, generator=generator, dtype=dtype) / math.sqrt(width)
        )
        self.register_buffer("c", randn(depth - 1, width, generator=generator, dtype=dtype))

    def exact_loss(self) -> torch.Tensor:
        states = enumerate_binary(self.width, self.theta.dtype, self.theta.device)
        value = self.loss_fn(states)
        for layer in reversed(range(self.depth - 1)):
            logits = states @ self.W[layer].T + self.c[layer]  # rows: previous state
            trans = bernoulli_log_prob(states[None, :, :], logits[:, None, :]).sum(-1).exp()
            value = trans @ value
        return (bernoulli_log_prob(states, self.theta).sum(-1).exp() * value).sum()

    def gradient_samples(
        self, n_samples: int, estimator: str, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``n_samples`` single-sample estimates of the gradient in :math:`\\theta`, shape ``(n_samples, width)``.

        Every layer uses the same straight-through style ``estimator`` (not ``reinforce``).
        """
        if estimator == "reinforce":
            raise ValueError(
                "BinaryStack.gradient_samples is for pathwise estimators; use gradient_samples for REINFORCE"
            )
        unit = BinaryStochastic(estimator).train()
        theta = self.theta.detach().expand(n_samples, -1).clone().requires_grad_(True)
        h = unit(theta, generator)
        for layer in range(self.depth - 1):
            h = unit(h @ self.W[layer].T + self.c[layer], generator)
        (grad,) = torch.autograd.grad(self.loss_fn(h).sum(), theta)
        return grad

    def exact_gradient(self) -> torch.Tensor:
        """The exact gradient of :meth:`exact_loss` in :math:`\\theta`."""
        (grad,) = torch.autograd.grad(self.exact_loss(), self.theta)
        return grad

    def expected_estimate(self, estimator: str) -> torch.Tensor:
        r"""The exact expectation of one estimate of ``estimator`` in :math:`\theta`, by enumeration (no sampling).

        For ``st_id`` / ``st_sigmoid`` the estimate of one run is
        :math:`\hat g=s_1\odot W_1^\top(s_2\odot\cdots W_{D-1}^\top(s_D\odot\nabla L(h_D)))`, with
        :math:`s_l=1` (ST-id) or :math:`\sigma'(a_l)` (ST-σ′) at the sampled states; its mean is summed
        layer by layer over the :math:`2^{\text{width}}` states, from the loss down. For ``reinforce``
        it is :math:`\mathbb E[(h_1-p_1)\,\mathbb E[L\mid h_1]]`, which equals :meth:`exact_gradient`
        (the unbiased reference). This is the mean of :meth:`gradient_samples` without its
        Monte Carlo noise, so its distance to the exact gradient is the estimator's bias alone.
        """
        check_choice("estimator", estimator, ("reinforce", *ST_VARIANTS))
        theta = self.theta.detach()
        states = enumerate_binary(self.width, theta.dtype, theta.device)
        if estimator == "reinforce":
            value = self.loss_fn(states)  # E[L | h_l], from the loss down to the first layer
            for layer in reversed(range(self.depth - 1)):
                logits = states @ self.W[layer].T + self.c[layer]
                value = bernoulli_log_prob(states[None, :, :], logits[:, None, :]).sum(-1).exp() @ value
            prob = bernoulli_log_prob(states, theta).sum(-1).exp()
            return ((prob * value)[:, None] * (states - torch.sigmoid(theta))).sum(0)
        h = states.clone().requires_grad_(True)
        (v,) = torch.autograd.grad(self.loss_fn(h).sum(), h)  # dL/dh_D at every state
        v = v.detach()
        for layer in reversed(range(self.depth - 1)):  # v(h_l) = W^T (s_{l+1} * E[v(h_{l+1}) | h_l])
            logits = states @ self.W[layer].T + self.c[layer]  # rows: the state h_l
            trans = bernoulli_log_prob(states[None, :, :], logits[:, None, :]).sum(-1).exp()
            slope = 1.0 if estimator == "st_id" else torch.sigmoid(logits) * torch.sigmoid(-logits)
            v = (slope * (trans @ v)) @ self.W[layer]
        slope0 = 1.0 if estimator == "st_id" else torch.sigmoid(theta) * torch.sigmoid(-theta)
        return slope0 * (bernoulli_log_prob(states, theta).sum(-1).exp() @ v)


def st_depth_cosines(
    depths: list[int],
    n_stacks: int,
    seed: int = 0,
    estimators: tuple[str, ...] = ("st_sigmoid", "st_id"),
    width: int = 4,
    n_samples: int | None = 2000,
) -> dict[str, list[float]]:
    r"""Mean cosine between the mean estimate of each estimator and the exact gradient, per depth.

    For each depth :math:`D` and estimator, ``n_stacks`` random :class:`BinaryStack` s of ``width``
    units per layer (loss :class:`QuadraticToy` with ``width`` outputs) are drawn from a generator seeded with
    :math:`1000\,\text{seed}+D` (every estimator sees the same stacks); each gives
    :math:`\cos(\bar g,\nabla_\theta\mathbb E[L])`, where :math:`\bar g` is the mean of ``n_samples``
    estimates, or, with ``n_samples=None``, their exact expectation
    (:meth:`BinaryStack.expected_estimate`: the cosine then measures bias only, and ``"reinforce"``
    is allowed as the unbiased reference). Returns, per estimator, the mean cosine at each depth.
    """
    if n_samples is None:  # no sampling: the mean of the per-stack cosines of expected estimates
        per_stack = depth_cosines(depths, n_stacks, seed, estimators, width)
        return {name: [float(c) for c in cos.mean(1)] for name, cos in per_stack.items()}
    out: dict[str, list[float]] = {name: [] for name in estimators}
    for depth in depths:
        for name in estimators:
            g = torch.Generator().manual_seed(1000 * seed + depth)
            mc = []
            for _ in range(n_stacks):
                stack = BinaryStack(width, depth, QuadraticToy(width, m=width, generator=g), generator=g)
                mc.append(gradient_stats(stack.gradient_samples(n_samples, name, g), stack.exact_gradient()).cosine)
            out[name].append(float(torch.tensor(mc).mean()))
    return out


def depth_cosines(
    depths: list[int],
    n_stacks: int,
    seed: int = 0,
    estimators: tuple[str, ...] = ("st_sigmoid", "st_id"),
    width: int = 4,
) -> dict[str, torch.Tensor]:
    r"""Per-stack cosines between each estimator's expected estimate and the exact gradient, per depth.

    For each depth :math:`D`, ``n_stacks`` random :class:`BinaryStack` s of ``width`` units per
    layer (loss :class:`QuadraticToy` with ``width`` outputs) are drawn from a generator seeded
    with :math:`1000\,\text{seed}+D`; every estimator sees the same stacks. Each stack gives
    :math:`\cos(\mathbb E[\hat g],\nabla_\theta\mathbb E[L])` with the expectation taken exactly
    (:meth:`BinaryStack.expected_estimate`), so the cosine measures bias only; ``"reinforce"`` is
    the unbiased reference, whose cosine is 1 up to rounding. Returns, per estimator, a
    ``(len(depths), n_stacks)`` tensor: independent draws per depth, ready for
    :func:`~varbook.estimators.variance.linear_trend`.
    """
    out: dict[str, list[list[float]]] = {name: [] for name in estimators}
    for depth in depths:
        g = torch.Generator().manual_seed(1000 * seed + depth)
        cos: dict[str, list[float]] = {name: [] for name in estimators}
        for _ in range(n_stacks):
            stack = BinaryStack(width, depth, QuadraticToy(width, m=width, generator=g), generator=g)
            exact = stack.exact_gradient()
            for name in estimators:
                cos[name].append(float(F.cosine_similarity(stack.expected_estimate(name), exact, dim=0)))
        for name in estimators:
            out[name].append(cos[name])
    return {name: torch.tensor(rows, dtype=torch.float64) for name, rows in out.items()}
