r"""A tiny pre-LayerNorm transformer, small enough to train on a CPU :cite:`vaswani2017attention`.

Each block computes :math:`h\leftarrow h+\mathrm{Attn}(\mathrm{LN}(h))` and
:math:`h\leftarrow h+\mathrm{FFN}(\mathrm{LN}(h))`. Options a reader of later chapters needs:

* ``causal`` attention (a language model) or bidirectional;
* positional encoding ``"learned"``, ``"sinusoidal"`` or ``"none"``;
* ``linear_factory(in_features, out_features, role)`` builds every linear layer, so a chapter can
  swap in its own (roles: ``qkv``, ``attn_out``, ``ff_in``, ``ff_out``, ``head``);
* ``matmul_factory(role)`` (roles: ``attn_scores`` for :math:`QK^\top`, ``attn_values`` for
  :math:`A\,V`) builds modules ``f(a, b)`` that replace the two attention products; with it,
  attention is computed explicitly (scores, mask, softmax) instead of by
  ``scaled_dot_product_attention``, which stays the default and is also used while both
  modules have a true attribute ``is_exact``;
* ``forward(..., return_residual=True)`` also returns the residual stream after each block.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import check_choice

POSITIONAL = ("learned", "sinusoidal", "none")


def default_linear(in_features: int, out_features: int, role: str) -> nn.Module:
    return nn.Linear(in_features, out_features)


def sinusoidal_positions(max_len: int, d_model: int) -> torch.Tensor:
    """The fixed sine/cosine positional encodings, shape ``(max_len, d_model)``."""
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
    return pe


class Block(nn.Module):
    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        causal: bool,
        linear_factory: Callable,
        matmul_factory: Callable | None = None,
    ):
        super().__init__()
        self.n_heads, self.causal = n_heads, causal
        self.scores = matmul_factory("attn_scores") if matmul_factory else None
        self.values = matmul_factory("attn_values") if matmul_factory else None
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = linear_factory(d_model, 3 * d_model, "qkv")
        self.attn_out = linear_factory(d_model, d_model, "attn_out")
        self.ln2 = nn.LayerNorm(d_model)
        self.ff_in = linear_factory(d_model, d_ff, "ff_in")
        self.ff_out = linear_factory(d_ff, d_model, "ff_out")

    def _exact_products(self) -> bool:
        """Whether both replaced products say they compute plain, exact products (attribute ``is_exact``)."""
        return bool(getattr(self.scores, "is_exact", False) and getattr(self.values, "is_exact", False))

    def forward(self, h: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        mask = None
        if padding_mask is not None:  # True where the key is a real token
            mask = padding_mask[:, None, None, :]
            if self.causal:
                mask = mask & torch.ones(n, n, dtype=torch.bool, device=h.device).tril()
        if self.scores is None or self.values is None or self._exact_products():
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal and mask is None)
        else:  # the same attention with replaceable products
            if mask is None and self.causal:
                mask = torch.ones(n, n, dtype=torch.bool, device=h.device).tril()
            scores = self.scores(q, k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            att = self.values(scores.softmax(-1), v)
        h = h + self.attn_out(att.transpose(1, 2).reshape(b, n, d))
        return h + self.ff_out(F.gelu(self.ff_in(self.ln2(h))))


class TinyTransformer(nn.Module):
    """Token embedding, ``n_layers`` pre-LN blocks, a final LayerNorm and a head of ``n_out`` outputs (default: the vocabulary)."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        max_len: int = 128,
        causal: bool = True,
        positional: str = "learned",
        d_ff: int | None = None,
        n_out: int | None = None,
        linear_factory: Callable = default_linear,
        matmul_factory: Callable | None = None,
    ):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        check_choice("positional encoding", positional, POSITIONAL)
        self.max_len, self.positional, self.causal = max_len, positional, causal
        self.embed = nn.Embedding(vocab_size, d_model)
        if positional == "learned":
            self.pos = nn.Parameter(0.02 * torch.randn(max_len, d_model))
        else:
            self.register_buffer("pos", sinusoidal_positions(max_len, d_model) if positional == "sinusoidal" else None)
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, d_ff or 4 * d_model, causal, linear_factory, matmul_factory)
            for _ in range(n_layers)
        )
        self.ln_f = nn.LayerNorm(d_model)
        self.head = linear_factory(d_model, n_out or vocab_size, "head")

    def hidden(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None, return_residual: bool = False):
        """The final normalised hidden states ``(B, L, d)`` (and the residual stream after each block)."""
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds max_len {self.max_len}")
        h = self.embed(tokens)
        if self.pos is not None:
            h = h + self.pos[: tokens.shape[1]]
        residual = []
        for block in self.blocks:
            h = block(h, padding_mask)
            residual.append(h)
        h = self.ln_f(h)
        return (h, residual) if return_residual else h

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None, return_residual: bool = False):
        """Per-position outputs ``(B, L, n_out)`` (and the residual stream if asked)."""
        h, residual = self.hidden(tokens, padding_mask, return_residual=True)
        out = self.head(h)
        return (out, residual) if return_residual else out
