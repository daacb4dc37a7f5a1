r"""Time-conditioned networks for diffusion and flow models: a sinusoidal embedding, an MLP and a small UNet.

Both networks take ``(x, t)`` or ``(x, t, c)``: ``t`` a float tensor of shape ``(batch,)`` in :math:`[0, 1]`,
``c`` integer class labels where the value ``n_classes`` is the null label of classifier-free guidance.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .mlp import MLP


def sinusoidal_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    r"""Transformer-style features :math:`[\sin(\omega_k s t), \cos(\omega_k s t)]`, :math:`\omega_k = 10^{-4 k/(d/2)}` :cite:`vaswani2017attention`."""
    if dim % 2:
        raise ValueError(f"embedding dimension must be even, got {dim}")
    if t.dim() != 1:
        raise ValueError(f"t must have shape (batch,), got {tuple(t.shape)}")
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=t.dtype) / half)
    arg = scale * t[:, None] * freqs[None]
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


class _Conditioning(nn.Module):
    """Time embedding, plus a class embedding (with a null class) when ``n_classes`` is given."""

    def __init__(self, time_dim: int, width: int, n_classes: int | None, extra_times: int = 0):
        super().__init__()
        self.time_dim, self.n_classes, self.n_times = time_dim, n_classes, 1 + extra_times
        self.proj = nn.Sequential(nn.Linear(time_dim * self.n_times, width), nn.SiLU(), nn.Linear(width, width))
        self.classes = nn.Embedding(n_classes + 1, width) if n_classes else None

    def forward(self, ts: list[torch.Tensor], c: torch.Tensor | None) -> torch.Tensor:
        if len(ts) != self.n_times:
            raise ValueError(f"this network takes {self.n_times} time argument(s), got {len(ts)}")
        h = self.proj(torch.cat([sinusoidal_embedding(t, self.time_dim) for t in ts], dim=1))
        if self.classes is None or self.n_classes is None:
            if c is not None:
                raise ValueError("this network was built without classes (n_classes=None) but got labels")
            return h
        if c is None:
            raise ValueError("this network is class-conditional: pass labels (use n_classes for the null label)")
        if c.min() < 0 or c.max() > self.n_classes:
            raise ValueError(f"labels must lie in [0, {self.n_classes}] ({self.n_classes} is the null label)")
        return h + self.classes(c)


class TimeMLP(nn.Module):
    """An MLP on ``[x, embed(t)(, embed(c))]`` with SiLU activations, the denoiser of low-dimensional data.

    ``extra_times=1`` adds a second time input (flow maps take a start and an end time).
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 128,
        depth: int = 3,
        time_dim: int = 64,
        n_classes: int | None = None,
        extra_times: int = 0,
    ):
        super().__init__()
        if dim < 1 or hidden < 1 or depth < 1:
            raise ValueError("dim, hidden and depth must be positive")
        self.dim = dim
        self.cond = _Conditioning(time_dim, hidden, n_classes, extra_times)
        self.inp = nn.Linear(dim, hidden)
        self.body = MLP(hidden, [hidden] * (depth - 1), dim, activation=nn.SiLU)

    def forward(self, x: torch.Tensor, *args) -> torch.Tensor:
        *ts, c = args if len(args) > self.cond.n_times else (*args, None)
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (batch, {self.dim}), got {tuple(x.shape)}")
        return self.body(torch.nn.functional.silu(self.inp(x) + self.cond(list(ts), c)))


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb: int, groups: int = 8):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(min(groups, c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(min(groups, c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, e):
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = h + self.emb(e)[:, :, None, None]
        h = self.conv2(nn.functional.silu(self.norm2(h)))
        return h + self.skip(x)


class SmallUNet(nn.Module):
    """A two-level UNet (residual blocks, GroupNorm, SiLU) for small square images whose side is divisible by 4.

    ``channels`` input channels, ``base`` feature maps at full resolution, ``2 * base`` at the lower two.
    """

    def __init__(self, channels: int = 1, base: int = 32, time_dim: int = 64, n_classes: int | None = None):
        super().__init__()
        emb = 4 * base
        self.channels = channels
        self.cond = _Conditioning(time_dim, emb, n_classes)
        self.inp = nn.Conv2d(channels, base, 3, padding=1)
        self.down1, self.pool1 = _ResBlock(base, base, emb), nn.Conv2d(base, base, 3, stride=2, padding=1)
        self.down2, self.pool2 = _ResBlock(base, 2 * base, emb), nn.Conv2d(2 * base, 2 * base, 3, stride=2, padding=1)
        self.mid = _ResBlock(2 * base, 2 * base, emb)
        self.up2 = _ResBlock(4 * base, 2 * base, emb)
        self.up1 = _ResBlock(3 * base, base, emb)
        self.out = nn.Sequential(nn.GroupNorm(8, base), nn.SiLU(), nn.Conv2d(base, channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels or x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(
                f"x must have shape (batch, {self.channels}, H, W) with H and W divisible by 4, got {tuple(x.shape)}"
            )
        e = self.cond([t], c)
        h0 = self.inp(x)
        h1 = self.down1(h0, e)
        h2 = self.down2(self.pool1(h1), e)
        h = self.mid(self.pool2(h2), e)
        h = self.up2(torch.cat([nn.functional.interpolate(h, scale_factor=2), h2], 1), e)
        h = self.up1(torch.cat([nn.functional.interpolate(h, scale_factor=2), h1], 1), e)
        return self.out(h)
