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

import torch
import torch.nn.functional as F
from torch import nn

SAMPLERS = ("exact", "uniform", "crs", "topk", "wta_crs")


def _check_ratio(ratio: float) -> None:
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")


def _check_sampler(sampler: str) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}: use one of {', '.join(SAMPLERS)}")


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


def sample_rows(p: torch.Tensor, k: int, sampler: str, generator: torch.Generator | None = None):
    """Indices and weights ``(idx, w)`` of the kept rows, so that the estimate is :math:`\\sum_t w_t G_{idx_t}`."""
    n = p.shape[0]
    _check_sampler(sampler)
    if sampler == "exact" or (k >= n and sampler in ("topk", "wta_crs")):  # every row kept: exact
        return torch.arange(n, device=p.device), torch.ones(n, dtype=p.dtype, device=p.device)
    if sampler == "uniform":
        idx = torch.randint(n, (k,), generator=generator).to(p.device)
        return idx, torch.full((k,), n / k, dtype=p.dtype, device=p.device)
    if sampler == "crs":
        idx = torch.multinomial(p.cpu(), k, replacement=True, generator=generator).to(p.device)
        return idx, 1.0 / (k * p[idx])
    if sampler == "topk":
        idx = p.topk(k).indices
        return idx, torch.ones(k, dtype=p.dtype, device=p.device)
    c = winner_count(p, k)
    winners = p.topk(c).indices if c else torch.empty(0, dtype=torch.long, device=p.device)
    rest = p.clone()
    rest[winners] = 0
    mass = 1 - float(p[winners].sum()) if c else 1.0
    k_s = k - c
    if k_s == 0 or float(rest.sum()) <= 0:
        return winners, torch.ones(c, dtype=p.dtype, device=p.device)
    drawn = torch.multinomial(rest.cpu() / rest.sum().cpu(), k_s, replacement=True, generator=generator).to(p.device)
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
) -> torch.Tensor:
    """One estimate of :math:`\\nabla W=\\nabla Y^\\top X` from ``k`` rows (``x`` ``(N, d_in)``, ``grad_y`` ``(N, d_out)``)."""
    p = optimal_probabilities(x, grad_y) if p is None else p
    idx, w = sample_rows(p, k, sampler, generator)
    return (grad_y[idx] * w[:, None]).T @ x[idx]


def expected_error(x: torch.Tensor, grad_y: torch.Tensor, k: int, sampler: str, p: torch.Tensor | None = None) -> float:
    r""":math:`\mathbb E\lVert\widehat{\nabla W}-\nabla W\rVert_F^2` in closed form.

    For i.i.d. sampling from :math:`q`: :math:`\frac1k\big[\sum_i\lVert G_i\rVert^2/q_i-\lVert\sum_i G_i\rVert^2\big]`
    over the sampled set; WTA-CRS applies it to the rows outside :math:`C` with :math:`q=p/(1-P_C)`
    and :math:`k_s` draws; top-:math:`k` has no variance, only the squared bias :math:`\lVert\sum_{i\notin\mathrm{top}}G_i\rVert^2`.
    """
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
    if sampler == "wta_crs":
        c = winner_count(p, k)
        rest = torch.ones(n, dtype=torch.bool)
        if c:
            rest[p.topk(c).indices] = False
        mass = float(p[rest].sum())
        return iid(rest.nonzero().flatten(), p[rest] / mass, k - c) if k > c else 0.0
    raise ValueError(f"unknown sampler {sampler!r}: use one of {', '.join(SAMPLERS)}")


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
        rows = g if ctx.idx is None else g[ctx.idx]
        grad_w = rows.T @ kept
        grad_b = g.sum(0) if ctx.has_bias else None
        ctx.layer.store_grad_norms(g.detach().norm(dim=-1))
        return grad_x, grad_w, grad_b, None


class ApproxLinear(nn.Linear):
    """``nn.Linear`` whose backward keeps only ``k = ratio * N`` rows of its input for the weight gradient.

    Row probabilities are :math:`\\propto\\lVert X_i\\rVert` times the output-gradient norms of the
    same examples cached from the last time they were seen (set ``example_ids`` of shape ``(B,)``
    before the forward pass; without a cache, :math:`\\lVert X_i\\rVert` alone). Evaluation (no
    gradient) is an ordinary linear map.
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
        self.example_ids: torch.Tensor | None = None
        self._cache: dict[int, torch.Tensor] = {}

    def cached_grad_norms(self, n: int, device) -> torch.Tensor | None:
        if self.example_ids is None or not self._cache:
            return None
        rows = [self._cache.get(int(i)) for i in self.example_ids]
        if any(r is None for r in rows):
            return None
        norms = torch.cat(rows).to(device)
        return norms if norms.numel() == n and bool((norms > 0).any()) else None

    def store_grad_norms(self, norms: torch.Tensor) -> None:
        if self.example_ids is None:
            return
        rows = norms.detach().view(len(self.example_ids), -1).to("cpu", torch.bfloat16).float()  # one transfer
        for i, row in zip(self.example_ids.tolist(), rows, strict=True):
            self._cache[i] = row

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() or not (x.requires_grad or self.weight.requires_grad):
            return F.linear(x, self.weight, self.bias)
        return _ApproxLinearFunction.apply(x, self.weight, self.bias, self)


def approx_linear_factory(sampler: str, ratio: float, roles=("attn_out", "ff_in", "ff_out")):
    """A ``linear_factory`` for :class:`~varbook.nn.transformer.TinyTransformer` that makes the given roles approximate."""

    def factory(in_features: int, out_features: int, role: str) -> nn.Module:
        if role in roles:
            return ApproxLinear(in_features, out_features, sampler=sampler, ratio=ratio)
        return nn.Linear(in_features, out_features)

    return factory


def set_sampler(model: nn.Module, sampler: str, ratio: float | None = None) -> None:
    """Switch every :class:`ApproxLinear` of ``model`` to ``sampler`` (and ``ratio``)."""
    _check_sampler(sampler)
    if ratio is not None:
        _check_ratio(ratio)
    for m in model.modules():
        if isinstance(m, ApproxLinear):
            m.sampler = sampler
            if ratio is not None:
                m.ratio = ratio


def set_example_ids(model: nn.Module, ids: torch.Tensor | None) -> None:
    for m in model.modules():
        if isinstance(m, ApproxLinear):
            m.example_ids = ids


class SavedBytes:
    """Counts the bytes autograd keeps for backward (each storage once), excluding the given parameters.

    >>> with SavedBytes(model.parameters()) as meter:  # doctest: +SKIP
    ...     loss = model(x).sum()
    >>> meter.bytes  # doctest: +SKIP
    """

    def __init__(self, exclude=()):
        self.exclude = {p.untyped_storage().data_ptr() for p in exclude}
        self.storages: dict[int, int] = {}
        self._ctx = None

    def _pack(self, t: torch.Tensor):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self.exclude:
            self.storages[ptr] = storage.nbytes()
        return t

    @property
    def bytes(self) -> int:
        return sum(self.storages.values())

    def __enter__(self) -> SavedBytes:
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)


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
    "set_sampler",
    "set_example_ids",
    "SavedBytes",
]
