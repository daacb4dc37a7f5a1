r"""Winner-take-all column-row sampling (WTA-CRS) for memory-efficient training :cite:`liu2023winner`.

A linear layer :math:`Y=XW^\top` over :math:`N` tokens has the weight gradient
:math:`\nabla W=\nabla Y^\top X=\sum_i G_i`, :math:`G_i=\nabla Y_i X_i^\top`. Keeping only :math:`k` rows
of :math:`X` for the backward pass gives an estimate :math:`\widehat{\nabla W}=\sum_t w_t G_{i_t}`:

* CRS: :math:`k` i.i.d. draws from :math:`p`, :math:`w=1/(kp_i)` (unbiased);
* uniform: CRS with :math:`p_i=1/N`;
* deterministic top-:math:`k`: the :math:`k` largest :math:`p_i`, :math:`w=1` (biased);
* WTA-CRS: keep a winner set :math:`C` (the largest :math:`p_i`) exactly and sample the other
  :math:`k_s=k-|C|` rows from :math:`p` restricted to the rest,
  :math:`\widehat{\nabla W}=\sum_{c\in C}G_c+\frac{1-P_C}{k_s}\sum_t G_{j_t}/p_{j_t}` (unbiased).

The input gradient :math:`\nabla Y\,W` and the bias gradient stay exact.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from ..memory import SavedTensors
from ..nn.transformer import TinyTransformer
from ..runtime import History, Meter, check_choice, descend, multinomial, progress, randint, seed_all
from .charlm import LineTask, accuracy, fresh_classifier

SAMPLERS = ("exact", "uniform", "crs", "topk", "wta_crs")
"""The row samplers: all rows, uniform, column-row sampling, deterministic top-k, winner-take-all CRS."""


def _check_ratio(ratio: float) -> None:
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")


def _check_sampler(sampler: str) -> None:
    check_choice("sampler", sampler, SAMPLERS)


def sample_size(n: int, ratio: float) -> int:
    """:math:`k=\\min(N,\\max(\\lfloor N\\cdot\\text{ratio}\\rfloor,10))`."""
    _check_ratio(ratio)
    return min(n, max(int(n * ratio), 10))


def winner_count(p: torch.Tensor, k: int) -> int:
    """The adaptive size of the deterministic set: argmin over :math:`c` of :math:`(1-\\sum_{i\\le c}p_{(i)})/(k-c)`, or 0."""
    top = p.topk(k).values
    c = torch.arange(k, device=p.device)
    score = (1 - torch.cumsum(top, 0)[:-1]) / (k - 1 - c[:-1]) if k > 1 else torch.empty(0, device=p.device)
    if score.numel() == 0:
        return 0
    best = int(score.argmin())
    return best + 1 if float(score[best]) < 1.0 / k else 0


def sample_rows(
    p: torch.Tensor, k: int, sampler: str, generator: torch.Generator | None = None, replacement: bool = True
):
    """Indices and weights ``(idx, w)`` of the kept rows, so that the estimate is :math:`\\sum_t w_t G_{idx_t}`.

    ``replacement=False`` draws the CRS / WTA-CRS rows without replacement (``torch.multinomial``'s
    default) while keeping the weights :math:`1/(kp_i)`: a deliberately wrong variant (a negative
    control), biased and with an error that is not :func:`expected_error`'s.
    """
    n = p.shape[0]
    _check_sampler(sampler)
    if sampler == "exact" or (k >= n and sampler in ("topk", "wta_crs")):  # every row kept: exact
        return torch.arange(n, device=p.device), torch.ones(n, dtype=p.dtype, device=p.device)
    if sampler == "uniform":
        idx = randint(0, n, (k,), generator=generator, device=p.device)
        return idx, torch.full((k,), n / k, dtype=p.dtype, device=p.device)
    if sampler == "crs":  # eq. wta-crs-estimate: k i.i.d. draws, weights 1 / (k p_i)
        idx = multinomial(p, k, replacement=replacement, generator=generator)
        return idx, 1.0 / (k * p[idx])
    if sampler == "topk":
        idx = p.topk(k).indices
        return idx, torch.ones(k, dtype=p.dtype, device=p.device)
    # eq. wta-estimate: the winners C kept exactly, k - |C| draws from p restricted to the rest
    c = winner_count(p, k)
    winners = p.topk(c).indices if c else torch.empty(0, dtype=torch.long, device=p.device)
    rest = p.clone()
    rest[winners] = 0
    mass = 1 - float(p[winners].sum()) if c else 1.0
    k_s = k - c
    if k_s == 0 or float(rest.sum()) <= 0:
        return winners, torch.ones(c, dtype=p.dtype, device=p.device)
    drawn = multinomial(rest / rest.sum(), k_s, replacement=replacement, generator=generator)
    idx = torch.cat([winners, drawn])
    w = torch.cat([torch.ones(c, dtype=p.dtype, device=p.device), mass / (k_s * p[drawn])])
    return idx, w


def optimal_probabilities(x: torch.Tensor, grad_y: torch.Tensor | None = None, eps: float = 1e-12) -> torch.Tensor:
    """:math:`p_i\\propto\\lVert\\nabla Y_i\\rVert\\,\\lVert X_i\\rVert` (or :math:`\\lVert X_i\\rVert` alone without gradient norms)."""
    score = x.norm(dim=-1)
    if grad_y is not None:
        score = score * (grad_y.norm(dim=-1) if grad_y.dim() == x.dim() else grad_y)
    score = score.clamp_min(eps)
    return score / score.sum()


def approx_weight_grad(
    x: torch.Tensor,
    grad_y: torch.Tensor,
    k: int,
    sampler: str,
    p: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    replacement: bool = True,
) -> torch.Tensor:
    """One estimate of :math:`\\nabla W=\\nabla Y^\\top X` from ``k`` rows (``x`` ``(N, d_in)``, ``grad_y`` ``(N, d_out)``).

    ``replacement=False``: the wrong variant of :func:`sample_rows`.
    """
    p = optimal_probabilities(x, grad_y) if p is None else p
    idx, w = sample_rows(p, k, sampler, generator, replacement)
    return (grad_y[idx] * w[:, None]).T @ x[idx]


def expected_error(
    x: torch.Tensor,
    grad_y: torch.Tensor,
    k: int,
    sampler: str,
    p: torch.Tensor | None = None,
    winners: int | None = None,
) -> float:
    r""":math:`\mathbb E\lVert\widehat{\nabla W}-\nabla W\rVert_F^2` in closed form.

    For i.i.d. sampling from :math:`q`: :math:`\frac1k\big[\sum_i\lVert G_i\rVert^2/q_i-\lVert\sum_i G_i\rVert^2\big]`
    over the sampled set; WTA-CRS applies it to the rows outside :math:`C` with :math:`q=p/(1-P_C)`
    and :math:`k_s` draws; top-:math:`k` has no variance, only the squared bias :math:`\lVert\sum_{i\notin\mathrm{top}}G_i\rVert^2`.
    ``winners`` fixes the size of WTA-CRS's winner set instead of choosing it adaptively
    (:func:`winner_count`); a fixed size is the wrong variant that can do worse than CRS.
    """
    _check_sampler(sampler)
    p = optimal_probabilities(x, grad_y) if p is None else p
    n = x.shape[0]
    g2 = (grad_y.norm(dim=-1) * x.norm(dim=-1)) ** 2

    def iid(rows, q, draws):
        total = (grad_y[rows].T @ x[rows]).pow(2).sum()
        return float((g2[rows] / q).sum() - total) / draws

    if sampler == "exact":
        return 0.0
    if sampler == "uniform":
        return iid(torch.arange(n), torch.full((n,), 1.0 / n, dtype=x.dtype), k)
    if sampler == "crs":
        return iid(torch.arange(n), p, k)
    if sampler == "topk":
        rest = torch.ones(n, dtype=torch.bool)
        rest[p.topk(min(k, n)).indices] = False
        return float((grad_y[rest].T @ x[rest]).pow(2).sum())
    c = winner_count(p, k) if winners is None else min(winners, k)  # wta_crs
    rest = torch.ones(n, dtype=torch.bool)
    if c:
        rest[p.topk(c).indices] = False
    mass = float(p[rest].sum())
    return iid(rest.nonzero().flatten(), p[rest] / mass, k - c) if k > c else 0.0


class _ApproxLinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, layer):
        flat = x.reshape(-1, x.shape[-1])
        out = F.linear(flat, weight, bias)
        n = flat.shape[0]
        if layer.sampler == "exact":
            ctx.save_for_backward(flat, weight)
            ctx.idx = None
        else:
            k = sample_size(n, layer.ratio)
            with torch.no_grad():
                cached = layer.cached_grad_norms(n, flat.device)
                p = optimal_probabilities(flat.detach(), cached)
                idx, w = sample_rows(p, k, layer.sampler, layer.generator)
            kept = flat[idx] * w[:, None].to(flat.dtype)  # the only activation kept for backward
            ctx.save_for_backward(kept, weight)
            ctx.idx = idx
        ctx.layer, ctx.has_bias, ctx.shape = layer, bias is not None, x.shape
        return out.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        kept, weight = ctx.saved_tensors
        g = grad_out.reshape(-1, grad_out.shape[-1])
        grad_x = (g @ weight).view(ctx.shape)
        if ctx.idx is None:
            rows = g
        else:
            # the wrong variant pairs each kept row of X
            # with the gradient of the previous kept row
            rows = g[ctx.idx.roll(1) if ctx.layer.misaligned else ctx.idx]
        grad_w = rows.T @ kept  # eq. wta-gradient over the kept rows: sum_t w_t dY_t X_t^T
        grad_b = g.sum(0) if ctx.has_bias else None
        ctx.layer.store_grad_norms(g.detach().norm(dim=-1))
        return grad_x, grad_w, grad_b, None


class ApproxLinear(nn.Linear):
    """``nn.Linear`` whose backward keeps only ``k = ratio * N`` rows of its input for the weight gradient.

    Row probabilities are :math:`\\propto\\lVert X_i\\rVert` times the output-gradient norms of the
    same examples cached from the last time they were seen (set ``example_ids`` of shape ``(B,)``
    before the forward pass). An example without a cache entry falls back on its own
    (:meth:`cached_grad_norms`); with no entry for any example of the batch,
    :math:`\\lVert X_i\\rVert` alone. Evaluation (no
    gradient) is an ordinary linear map. ``misaligned=True`` is a deliberately wrong backward pass
    (a negative control): an off-by-one in the kept indices pairs each kept input row with the
    output gradient of another token.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        sampler: str = "exact",
        ratio: float = 0.3,
        generator: torch.Generator | None = None,
    ):
        super().__init__(in_features, out_features, bias)
        _check_sampler(sampler)
        _check_ratio(ratio)
        self.sampler, self.ratio, self.generator = sampler, ratio, generator
        self.misaligned = False
        self.example_ids: torch.Tensor | None = None
        self._cache: dict[int, torch.Tensor] = {}
        self.usage = {"passes": 0, "with_norms": 0, "rows": 0, "rows_cached": 0}

    def cached_grad_norms(self, n: int, device) -> torch.Tensor | None:
        r"""Per-token output-gradient norms of the current batch from the cache, or ``None`` if no example has any.

        The fallback is per example: an example not seen before gets, on every token, the mean of
        the non-zero cached norms of the batch, so its rows are weighted by :math:`\lVert X_i\rVert`
        times a typical gradient norm while the other examples use their own cached norms. Only
        when no example of the batch is cached does the layer fall back to
        :math:`p_i\propto\lVert X_i\rVert` for the whole batch (``None``). ``usage`` counts the
        sampled passes, those that used gradient norms, and the rows that had their own.
        """
        self.usage["passes"] += 1
        self.usage["rows"] += n
        if self.example_ids is None or not self._cache or n % len(self.example_ids):
            return None
        rows = [self._cache.get(int(i)) for i in self.example_ids]
        seen = [r for r in rows if r is not None and r.numel() * len(rows) == n]
        if not seen:
            return None
        known = torch.cat(seen)
        typical = known[known > 0].mean() if bool((known > 0).any()) else None
        if typical is None:
            return None
        per = n // len(rows)
        fill = torch.full((per,), float(typical))
        norms = torch.cat([r if r is not None and r.numel() == per else fill for r in rows]).to(device)
        self.usage["with_norms"] += 1
        self.usage["rows_cached"] += per * len(seen)
        return norms

    def store_grad_norms(self, norms: torch.Tensor) -> None:
        if self.example_ids is None:
            return
        rows = norms.detach().view(len(self.example_ids), -1).to("cpu", torch.bfloat16).float()  # one transfer
        for i, row in zip(self.example_ids.tolist(), rows, strict=True):
            self._cache[i] = row

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() or not self.weight.requires_grad:  # no weight gradient: nothing to sample
            return F.linear(x, self.weight, self.bias)
        return _ApproxLinearFunction.apply(x, self.weight, self.bias, self)


def sample_batched(
    p: torch.Tensor, k: int, sampler: str, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r""":func:`sample_rows` for every row of ``p`` ``(R, n)`` at once: indices and weights, both ``(R, k)``.

    Each row of ``p`` is a distribution over :math:`n` terms; the estimate of row :math:`r` is
    :math:`\sum_t w_{rt}G_{r,\mathrm{idx}_{rt}}`. Samplers ``"crs"``, ``"uniform"`` and ``"wta_crs"``
    (eq. wta-estimate, with the adaptive winner count of :func:`winner_count` per row); every
    draw is with replacement, so every row keeps exactly ``k`` entries.
    """
    check_choice("sampler", sampler, ("uniform", "crs", "wta_crs"))
    rows, n = p.shape
    j = torch.arange(k, device=p.device)
    if sampler == "uniform":
        idx = randint(0, n, (rows, k), generator=generator, device=p.device)
        return idx, torch.full((rows, k), n / k, dtype=p.dtype, device=p.device)
    if sampler == "crs" or k < 2:
        idx = multinomial(p, k, replacement=True, generator=generator)
        return idx, 1.0 / (k * p.gather(1, idx))
    top, order = p.sort(dim=1, descending=True)
    score = (1 - top[:, : k - 1].cumsum(1)) / (k - 1 - j[:-1])  # |C| = 1 .. k - 1
    best, at = score.min(1)
    c = torch.where(best < 1.0 / k, at + 1, torch.zeros_like(at))  # the winner count of each row
    is_winner = j[None, :] < c[:, None]
    winners = order[:, :k]
    rest = p.scatter(1, winners, torch.where(is_winner, 0.0, p.gather(1, winners)))
    mass = rest.sum(1, keepdim=True)  # 1 - P_C
    drawn = multinomial(rest / mass.clamp_min(torch.finfo(p.dtype).tiny), k, replacement=True, generator=generator)
    idx = torch.where(is_winner, winners, drawn)
    w = mass / ((k - c)[:, None] * p.gather(1, drawn))
    return idx, torch.where(is_winner, torch.ones_like(w), w)


def _keep(t: torch.Tensor, dim: int, sampler: str, ratio: float, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The entries of ``t`` ``(R, ·, ·)`` along ``dim`` (1 or 2) kept for backward, scaled, and their indices."""
    n = t.shape[dim]
    k = sample_size(n, ratio)
    with torch.no_grad():
        score = t.detach().norm(dim=3 - dim).clamp_min(1e-12)  # the norm of each slice along dim
        idx, w = sample_batched(score / score.sum(1, keepdim=True), k, sampler, generator)
    if dim == 1:
        return t.gather(1, idx[:, :, None].expand(-1, -1, t.shape[2])) * w[:, :, None].to(t.dtype), idx
    return t.gather(2, idx[:, None, :].expand(-1, t.shape[1], -1)) * w[:, None, :].to(t.dtype), idx


class _ApproxMatmulFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, module):
        out = a @ b
        batch = out.shape[:-2]
        a3, b3 = a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:])
        # grad_b = a^T dC sums over the rows of a; grad_a = dC b^T sums over the columns of b
        if module.sample_a:
            a_kept, ia = _keep(a3, 1, module.sampler, module.ratio, module.generator)
        else:  # a is stored whole (and shared with whoever else keeps it)
            a_kept, ia = a3, None
        b_kept, ib = _keep(b3, 2, module.sampler, module.ratio, module.generator)
        ctx.save_for_backward(a_kept, b_kept, ib)
        ctx.ia = ia
        ctx.shapes = batch, a.shape, b.shape
        return out

    @staticmethod
    def backward(ctx, grad_out):
        a_kept, b_kept, ib = ctx.saved_tensors
        ia = ctx.ia
        batch, a_shape, b_shape = ctx.shapes
        g = grad_out.reshape(-1, *grad_out.shape[-2:])
        g_rows = g if ia is None else g.gather(1, ia[:, :, None].expand(-1, -1, g.shape[2]))  # dC at a's kept rows
        g_cols = g.gather(2, ib[:, None, :].expand(-1, g.shape[1], -1))  # dC at the kept columns of b
        grad_b = a_kept.transpose(1, 2) @ g_rows
        grad_a = g_cols @ b_kept.transpose(1, 2)
        return grad_a.reshape(a_shape), grad_b.reshape(b_shape), None


class ApproxMatmul(nn.Module):
    r"""``a @ b`` (batched, e.g. the attention products :math:`QK^\top` and :math:`A\,V` per batch and head) whose backward keeps samples.

    For :math:`C=AB`, :math:`\nabla B=A^\top\nabla C=\sum_i A_{i\cdot}^\top\nabla C_{i\cdot}` sums over the
    rows of :math:`A` and :math:`\nabla A=\nabla C\,B^\top` over the columns of :math:`B`: each is
    estimated as in eq. wta-estimate from ``k = ratio * n`` rows of :math:`A` (and columns of
    :math:`B`) drawn per batch element and head with :math:`p\propto` their norms (there is no
    gradient-norm cache for these products). Only the kept slices are stored. ``"exact"`` is an
    ordinary ``a @ b``. ``sample_a=False`` stores :math:`A` whole and keeps :math:`\nabla B` exact:
    for :math:`A\,V` the attention weights :math:`A` are kept anyway by the softmax's backward,
    so a sampled copy would add memory instead of saving it. While exact, :attr:`is_exact` lets
    :class:`~varbook.nn.transformer.TinyTransformer` compute attention with its fused kernel
    (faster, and it keeps no attention weights); ``fused_when_exact = False`` keeps the explicit
    products, which store the attention weights as the paper's baseline does.
    """

    def __init__(
        self,
        sampler: str = "exact",
        ratio: float = 0.3,
        generator: torch.Generator | None = None,
        sample_a: bool = True,
    ):
        super().__init__()
        _check_sampler(sampler)
        _check_ratio(ratio)
        self.sampler, self.ratio, self.generator, self.sample_a = sampler, ratio, generator, sample_a
        self.fused_when_exact = True

    @property
    def is_exact(self) -> bool:
        """Exact, and content to let the transformer use its fused attention kernel instead (see ``fused_when_exact``)."""
        return self.sampler == "exact" and self.fused_when_exact

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        sampled = self.sampler in ("uniform", "crs", "wta_crs")  # top-k and exact: an exact product
        if not sampled or not torch.is_grad_enabled() or not (a.requires_grad or b.requires_grad):
            return a @ b
        return _ApproxMatmulFunction.apply(a, b, self)


def approx_matmul_factory(sampler: str, ratio: float) -> Callable[[str], nn.Module]:
    r"""A ``matmul_factory`` for :class:`~varbook.nn.transformer.TinyTransformer`: the attention products sampled.

    :math:`QK^\top` keeps sampled queries and keys; :math:`A\,V` keeps sampled columns of
    :math:`V` and the attention weights whole (the softmax keeps them anyway).
    """
    return lambda role: ApproxMatmul(sampler, ratio, sample_a=role != "attn_values")


def approx_linear_factory(sampler: str, ratio: float, roles=("qkv", "attn_out", "ff_in", "ff_out")):
    """A ``linear_factory`` for :class:`~varbook.nn.transformer.TinyTransformer` that makes the given roles approximate."""

    def factory(in_features: int, out_features: int, role: str) -> nn.Module:
        if role in roles:
            return ApproxLinear(in_features, out_features, sampler=sampler, ratio=ratio)
        return nn.Linear(in_features, out_features)

    return factory


def set_sampler(
    model: nn.Module, sampler: str, ratio: float | None = None, kinds: tuple[type, ...] | None = None
) -> None:
    """Switch every :class:`ApproxLinear` and :class:`ApproxMatmul` of ``model`` (or those of ``kinds``) to ``sampler`` (and ``ratio``)."""
    _check_sampler(sampler)
    if ratio is not None:
        _check_ratio(ratio)
    kinds = (ApproxLinear, ApproxMatmul) if kinds is None else kinds
    for m in model.modules():
        if isinstance(m, (ApproxLinear, ApproxMatmul)) and isinstance(m, kinds):
            m.sampler = sampler
            if ratio is not None:
                m.ratio = ratio


def set_example_ids(model: nn.Module, ids: torch.Tensor | None) -> None:
    for m in model.modules():
        if isinstance(m, ApproxLinear):
            m.example_ids = ids


class SavedBytes(SavedTensors):
    """Counts the bytes autograd keeps for backward (each storage once), excluding the given parameters.

    :class:`varbook.memory.SavedTensors` with ``dedupe=True``; ``bytes`` is the total.

    >>> with SavedBytes(model.parameters()) as meter:  # doctest: +SKIP
    ...     loss = model(x).sum()
    >>> meter.bytes  # doctest: +SKIP
    """

    def __init__(self, exclude=()):
        super().__init__(exclude=exclude, dedupe=True)


# ----------------------------------------------------------------------------------------
# Experiments of the chapter: estimator errors on captured activations, memory, fine-tuning
# ----------------------------------------------------------------------------------------


def capture_linear_io(layer: nn.Module, loss_fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The input :math:`X` and output gradient :math:`\nabla Y` of ``layer`` in one backward pass.

    Registers hooks on ``layer``, calls ``loss_fn()`` (a forward pass through a model that uses
    ``layer``) and back-propagates the loss. Returns both as ``(N, features)`` float64 matrices on
    the CPU, one row per token.
    """
    captured: dict[str, torch.Tensor] = {}

    def capture(module, inputs, output):
        captured["x"] = inputs[0]
        output.register_hook(lambda grad: captured.update(gy=grad))

    handle = layer.register_forward_hook(capture)
    try:
        loss_fn().backward()
    finally:
        handle.remove()
    x, gy = captured["x"].detach(), captured["gy"].detach()
    return x.reshape(-1, x.shape[-1]).double().cpu(), gy.reshape(-1, gy.shape[-1]).double().cpu()


def relative_errors(
    x: torch.Tensor, grad_y: torch.Tensor, samplers: list[str], ratios: list[float]
) -> list[dict[str, float | str]]:
    r"""Closed-form :math:`\mathbb E\lVert\widehat{\nabla W}-\nabla W\rVert^2/\lVert\nabla W\rVert^2` per ratio and sampler.

    One row per (keep ratio, sampler), with two sets of row probabilities: ``"oracle norms"``,
    :math:`p_i\propto\lVert\nabla Y_i\rVert\lVert X_i\rVert`, and ``"input norms only"``,
    :math:`p_i\propto\lVert X_i\rVert` (what a layer uses before it has seen the gradients).
    """
    norm2 = (grad_y.T @ x).pow(2).sum().item()
    oracle, x_only = optimal_probabilities(x, grad_y), optimal_probabilities(x)
    rows: list[dict[str, float | str]] = []
    for ratio in ratios:
        k = sample_size(x.shape[0], ratio)
        for sampler in samplers:
            rows.append(
                {
                    "ratio": ratio,
                    "sampler": sampler,
                    "oracle norms": expected_error(x, grad_y, k, sampler, oracle) / norm2,
                    "input norms only": expected_error(x, grad_y, k, sampler, x_only) / norm2,
                }
            )
    return rows


def wta_gain(
    x: torch.Tensor,
    grad_y: torch.Tensor,
    ratios: list[float],
    p: torch.Tensor | None = None,
    winners_fraction: float | None = None,
) -> list[float]:
    r"""Closed-form error of WTA-CRS over that of CRS, per keep ratio (both with row probabilities ``p``).

    With ``winners_fraction=None`` the winner set has its adaptive size (:func:`winner_count`), so
    the ratio is at most 1. A fixed fraction (``0.5``: half of the :math:`k` kept rows are the
    largest-probability rows, whatever their share of the mass) is the wrong variant: when the
    largest terms carry less than their share, it does worse than CRS.
    """
    p = optimal_probabilities(x, grad_y) if p is None else p
    out = []
    for ratio in ratios:
        k = sample_size(x.shape[0], ratio)
        c = None if winners_fraction is None else int(winners_fraction * k)
        out.append(expected_error(x, grad_y, k, "wta_crs", p, winners=c) / expected_error(x, grad_y, k, "crs", p))
    return out


def draw_rows(
    p: torch.Tensor,
    k: int,
    sampler: str,
    n_draws: int,
    generator: torch.Generator | None = None,
    replacement: bool = True,
) -> torch.Tensor:
    r"""``n_draws`` independent draws of :func:`sample_rows` at once, as a ``(n_draws, N)`` matrix of row weights.

    Entry :math:`(d, i)` is the total weight of row :math:`i` in draw :math:`d` (zero where the row
    was not kept), so that draw :math:`d` estimates :math:`\nabla W` by :math:`\sum_i c_{di}G_i`. The
    same distributions as :func:`sample_rows` (``replacement=False``: its wrong variant), drawn
    with one call of the generator per sampler instead of one per draw.
    """
    _check_sampler(sampler)
    n = p.shape[0]
    ones = torch.ones(n_draws, n, dtype=p.dtype, device=p.device)
    if sampler == "exact" or (k >= n and sampler in ("topk", "wta_crs")):
        return ones
    if sampler == "topk":
        return torch.zeros_like(ones).index_fill_(1, p.topk(k).indices, 1.0)
    if sampler == "uniform":
        idx = randint(0, n, (n_draws, k), generator=generator, device=p.device)
        return torch.zeros_like(ones).scatter_add_(1, idx, torch.full(idx.shape, n / k, dtype=p.dtype))
    c = winner_count(p, k) if sampler == "wta_crs" else 0
    winners = p.topk(c).indices if c else torch.empty(0, dtype=torch.long, device=p.device)
    rest = p.clone()
    rest[winners] = 0
    out = torch.zeros_like(ones)
    out[:, winners] = 1.0
    if k == c or float(rest.sum()) <= 0:
        return out
    q = (rest / rest.sum()).expand(n_draws, n)
    drawn = multinomial(q, k - c, replacement=replacement, generator=generator)
    mass = 1 - float(p[winners].sum()) if c else 1.0  # 1 - P_C
    return out.scatter_add_(1, drawn, mass / ((k - c) * p[drawn]))  # eq. wta-estimate, per draw


def monte_carlo_check(
    x: torch.Tensor,
    grad_y: torch.Tensor,
    k: int,
    sampler: str,
    n_draws: int,
    p: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    replacement: bool = True,
    chunk: int = 500,
) -> dict[str, float]:
    r"""``n_draws`` estimates of :math:`\nabla W` from ``k`` rows against the exact gradient and the closed form.

    Returns two numbers. The squared error of the mean over its expectation for an unbiased
    estimator, :math:`R=n\lVert\bar g-\nabla W\rVert^2/\mathbb E\lVert\hat g-\nabla W\rVert^2` (closed form),
    which is about :math:`\sum_j\lambda_jZ_j^2` with :math:`\sum_j\lambda_j=1` when the estimator is
    unbiased, whatever the covariance, and grows like :math:`n\lVert\text{bias}\rVert^2` otherwise. And
    the measured mean squared error of one draw over :func:`expected_error`.
    ``replacement=False`` draws the rows without replacement (the wrong variant of
    :func:`sample_rows`), still against ``sampler``'s closed form.

    The draws are never formed: draw :math:`d` is :math:`\sum_ic_{di}G_i` with the weights of
    :func:`draw_rows`, so its error is the quadratic form :math:`(c_d-1)^\top K(c_d-1)` in the Gram
    matrix :math:`K_{ij}=\langle G_i,G_j\rangle=(\nabla Y_i\cdot\nabla Y_j)(X_i\cdot X_j)`, and the mean of
    the draws is :math:`\nabla Y^\top\operatorname{diag}(\bar c)X`. ``chunk`` draws are held at a time.
    """
    p = optimal_probabilities(x, grad_y) if p is None else p
    gram = (grad_y @ grad_y.T) * (x @ x.T)
    total, squared = torch.zeros_like(p), 0.0
    for start in range(0, n_draws, chunk):
        dev = draw_rows(p, k, sampler, min(chunk, n_draws - start), generator, replacement) - 1
        total += dev.sum(0)
        squared += float(((dev @ gram) * dev).sum())
    mean = grad_y.T @ (total[:, None] / n_draws * x)  # mean of the draws minus the exact gradient
    closed = expected_error(x, grad_y, k, sampler, p)
    return {
        "n ‖mean − ∇W‖² / closed form": n_draws * float(mean.pow(2).sum()) / closed,
        "MC error / closed form": squared / n_draws / closed,
    }


def saved_bytes(
    model: nn.Module, sampler: str, ratio: float, *inputs: torch.Tensor, kinds: tuple[type, ...] | None = None
) -> int:
    """Bytes autograd keeps for backward in one forward pass of ``model(*inputs)`` with ``sampler``.

    Every :class:`ApproxLinear` and :class:`ApproxMatmul` of ``model`` (or only the module types in
    ``kinds``) uses ``sampler`` at ``ratio`` for this pass and gets its own sampler back
    afterwards; parameters are not counted (:class:`SavedBytes`).
    """
    _check_sampler(sampler)
    _check_ratio(ratio)
    kinds = (ApproxLinear, ApproxMatmul) if kinds is None else kinds
    layers: list[ApproxLinear | ApproxMatmul] = [
        m for m in model.modules() if isinstance(m, (ApproxLinear, ApproxMatmul)) and isinstance(m, kinds)
    ]
    before = [(m.sampler, m.ratio) for m in layers]
    for m in layers:
        m.sampler, m.ratio = sampler, ratio
    try:
        with SavedBytes(model.parameters()) as meter:
            out = model(*inputs)
        del out
    finally:
        for m, (s, r) in zip(layers, before, strict=True):
            m.sampler, m.ratio = s, r
    return meter.bytes


class _Checkpointed(nn.Module):
    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, h: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.utils.checkpoint.checkpoint(self.block, h, padding_mask, use_reentrant=True)


def with_checkpointing(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose transformer blocks recompute their activations in the backward pass.

    Activation checkpointing (``torch.utils.checkpoint``), the usual way to trade compute for
    activation memory: each block keeps only its input and runs its forward pass again during
    backward. The re-entrant variant stores that input with ``save_for_backward``, so
    :class:`SavedBytes` sees it.
    """
    out = copy.deepcopy(model)
    for m in out.modules():
        if isinstance(m, TinyTransformer):
            m.blocks = nn.ModuleList(_Checkpointed(b) for b in m.blocks)
    return out


def lora_saved_bytes(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    rank: int = 8,
    ratio: float = 0.3,
    targets: tuple[str, ...] = ("qkv", "attn_out", "ff_in", "ff_out"),
) -> dict[str, int]:
    """Bytes saved for backward by a LoRA copy of ``model`` (``peft``), exact and with WTA-CRS in its adapters.

    ``peft``'s ``LoraConfig`` / ``get_peft_model`` put rank-``rank`` adapters :math:`BA` on the
    linear layers named in ``targets`` and freeze everything else; a frozen base layer keeps no
    input (no weight gradient), but each adapter's :math:`A` needs its input for its own weight
    gradient. "LoRA + WTA-CRS" makes every :math:`A` an :class:`ApproxLinear` at keep ratio
    ``ratio``, the combination of the paper's Table 2. Returns an empty dict when ``peft`` is not
    installed.
    """
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        return {}
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(targets), lora_dropout=0.0)
    lora = get_peft_model(copy.deepcopy(model), config)
    out = {f"LoRA r={rank}, exact": saved_bytes(lora, "exact", 1.0, *inputs)}
    for m in list(lora.modules()):
        adapters = getattr(m, "lora_A", None)
        if isinstance(adapters, nn.ModuleDict):
            for name, a in adapters.items():
                assert isinstance(a, nn.Linear)
                approx = ApproxLinear(a.in_features, a.out_features, bias=a.bias is not None).to(a.weight.device)
                approx.load_state_dict(a.state_dict())
                adapters[name] = approx
    out[f"LoRA r={rank} + wta_crs @ {ratio}"] = saved_bytes(lora, "wta_crs", ratio, *inputs)
    return out


def memory_comparison(
    model: nn.Module, inputs: tuple[torch.Tensor, ...], ratios: tuple[float, ...] = (0.3, 0.1), lora_rank: int = 8
) -> dict[str, int]:
    """Bytes saved for backward by one forward pass of ``model(*inputs)``, for each way of saving memory.

    Rows: exact (attention by the fused kernel while the products are exact); WTA-CRS at each of
    ``ratios`` (every :class:`ApproxLinear` and :class:`ApproxMatmul`); WTA-CRS at the first ratio
    with the linear layers only; exact attention computed explicitly, which stores its weights as
    the paper's baseline does; activation checkpointing of every block
    (:func:`with_checkpointing`); and ``peft``'s LoRA with and without WTA-CRS
    (:func:`lora_saved_bytes`, absent without ``peft``). ``model`` is left as it was.
    """
    memory = {"exact @ 1.0": saved_bytes(model, "exact", 1.0, *inputs)}
    memory.update({f"wta_crs @ {r}": saved_bytes(model, "wta_crs", r, *inputs) for r in ratios})
    only = saved_bytes(model, "wta_crs", ratios[0], *inputs, kinds=(ApproxLinear,))
    memory[f"wta_crs @ {ratios[0]}, linear layers only"] = only
    explicit = copy.deepcopy(model)
    for m in explicit.modules():
        if isinstance(m, ApproxMatmul):
            m.fused_when_exact = False
    memory["exact, attention weights stored"] = saved_bytes(explicit, "exact", 1.0, *inputs)
    checkpointed = saved_bytes(with_checkpointing(model), "exact", 1.0, *inputs)
    memory["exact, checkpointed blocks"] = checkpointed
    memory.update(lora_saved_bytes(model, inputs, rank=lora_rank, ratio=ratios[0]))
    return memory


def fine_tune(
    model: nn.Module,
    task: LineTask,
    steps: int,
    *,
    batch_size: int = 32,
    lr: float = 1e-3,
    generator: torch.Generator | None = None,
    desc: str | None = None,
) -> History:
    """Adam on the cross-entropy of ``batch_size`` random lines of ``task`` per step; logs ``loss``.

    Before each step the :class:`ApproxLinear` layers learn which lines are in the batch, so
    they can reuse the output-gradient norms cached the last time those lines were seen.
    ``generator`` draws the batches; ``desc`` labels a progress bar (``None``: silent).
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    device = next(model.parameters()).device
    tr = task.to(device)
    history = History()
    for step in progress(range(steps), desc=desc) if desc else range(steps):
        idx = randint(0, len(tr.labels), (batch_size,), generator=generator)
        set_example_ids(model, tr.ids[idx])
        idx = idx.to(device)
        loss = F.cross_entropy(model(tr.tokens[idx], tr.mask[idx]), tr.labels[idx])
        descend(opt, loss, step)
        history.log(loss=loss.detach())
    set_example_ids(model, None)
    return history


def fine_tune_samplers(
    backbone: TinyTransformer,
    train: LineTask,
    test: LineTask,
    samplers: list[str],
    *,
    steps: int,
    seed: int,
    ratio: float = 0.3,
    misaligned: bool = False,
    keep: dict[str, nn.Module] | None = None,
    kinds: tuple[type, ...] | None = None,
    batch_size: int = 32,
    desc: str | None = None,
) -> dict[str, tuple[float, float, float, float]]:
    """Fine-tune a fresh classifier on a copy of ``backbone`` with each sampler.

    Returns, per sampler: test accuracy, ms per step, the share of the sampled layer passes that
    used cached output-gradient norms, and the share of their rows that had their own cached
    norms (both ``nan`` for ``"exact"``, which samples nothing). Each run seeds torch's global
    generator with ``seed`` (the new layer, the row sampling) and draws its batches from a
    generator seeded with ``seed``, so that the runs differ only in the sampler of their
    :class:`ApproxLinear` layers (at keep ratio ``ratio``). ``misaligned=True`` gives every such
    layer the wrong backward pass of :class:`ApproxLinear` (a negative control). ``keep``, a dict,
    receives the fine-tuned models by sampler. ``kinds`` limits the sampling to those module
    types (default: :class:`ApproxLinear` and :class:`ApproxMatmul`); the others stay exact.
    ``batch_size`` lines per step (:func:`fine_tune`); ``desc`` labels a progress bar over the samplers.
    """
    device = next(backbone.parameters()).device
    out = {}
    for sampler in progress(samplers, desc=desc) if desc else samplers:
        seed_all(seed)
        model = fresh_classifier(backbone, len(train.names)).to(device)
        set_sampler(model, sampler, ratio, kinds)
        layers = [m for m in model.modules() if isinstance(m, ApproxLinear)]
        for m in layers:
            m.misaligned = misaligned
            m.usage = dict.fromkeys(m.usage, 0)
        g = torch.Generator().manual_seed(seed)
        with Meter(device) as meter:
            fine_tune(model, train, steps, batch_size=batch_size, generator=g)
        used = {key: sum(m.usage[key] for m in layers) for key in ("passes", "with_norms", "rows", "rows_cached")}
        passes, rows = used["passes"] or float("nan"), used["rows"] or float("nan")
        out[sampler] = (
            accuracy(model, test.to(device)),
            1e3 * meter.seconds / steps,
            used["with_norms"] / passes,
            used["rows_cached"] / rows,
        )
        if keep is not None:
            keep[sampler] = model
    return out


def batch_ratio_under_budget(
    make_model: Callable[[], nn.Module],
    task: LineTask,
    samplers: tuple[str, str] = ("exact", "wta_crs"),
    ratio: float = 0.3,
    batches: tuple[int, int] = (256, 1024),
    budget: int = 4 * 2**30,
    kinds: tuple[type, ...] | None = None,
) -> dict[str, float]:
    """GPU memory per line of a training step, and how much larger a batch ``samplers[1]`` fits in ``budget``.

    For each sampler, the peak CUDA memory of one forward and backward pass of a fresh
    ``make_model()`` is measured at two batch sizes; a line through the two points gives the
    memory per line (slope) and the fixed cost (intercept), hence the largest batch under
    ``budget`` bytes. ``kinds`` limits the sampling to those module types (as in
    :func:`set_sampler`). Needs a CUDA device (that of ``make_model()``'s parameters).
    """
    slopes = {}
    for sampler in samplers:
        peaks = []
        for batch_size in batches:
            model = make_model()
            device = next(model.parameters()).device
            if device.type != "cuda":
                raise ValueError("batch_ratio_under_budget measures CUDA memory: build the model on a GPU")
            set_sampler(model, sampler, ratio, kinds)
            tr = task.to(device)
            idx = torch.arange(batch_size, device=device) % len(tr.labels)
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            F.cross_entropy(model(tr.tokens[idx], tr.mask[idx]), tr.labels[idx]).backward()
            torch.cuda.synchronize()
            peaks.append(torch.cuda.max_memory_allocated() - base)
        slope = (peaks[1] - peaks[0]) / (batches[1] - batches[0])
        slopes[sampler] = (slope, peaks[0] - batches[0] * slope)
    fits = {s: (budget - b) / a for s, (a, b) in slopes.items()}
    first, second = samplers
    return {
        f"MiB per line, {first}": slopes[first][0] / 2**20,
        f"MiB per line, {second}@{ratio}": slopes[second][0] / 2**20,
        "batch ratio": fits[second] / fits[first],
    }


__all__ = [
    "SAMPLERS",
    "sample_size",
    "winner_count",
    "sample_rows",
    "optimal_probabilities",
    "approx_weight_grad",
    "expected_error",
    "ApproxLinear",
    "approx_linear_factory",
    "sample_batched",
    "ApproxMatmul",
    "approx_matmul_factory",
    "set_sampler",
    "set_example_ids",
    "SavedBytes",
    "capture_linear_io",
    "relative_errors",
    "wta_gain",
    "draw_rows",
    "monte_carlo_check",
    "saved_bytes",
    "with_checkpointing",
    "lora_saved_bytes",
    "memory_comparison",
    "fine_tune",
    "fine_tune_samplers",
    "batch_ratio_under_budget",
]
