"""Synthetic data generators.

Each data set is identified by its ``seed``: the generators draw from their own ``torch.Generator``
seeded with it (through :mod:`varbook.runtime`'s draw helpers), never from global state.
"""

from __future__ import annotations

import math

import torch

from ..runtime import check_choice, rand, randint, randn, randperm

TOYS = ("moons", "checkerboard", "rings")
"""The two-dimensional toy densities of :func:`toy2d`."""


def implicit_feedback(
    n_users: int = 5000,
    n_items: int = 400,
    latent_dim: int = 8,
    n_clusters: int = 6,
    popularity: float = 0.8,
    seed: int = 0,
) -> torch.Tensor:
    r"""Low-rank implicit feedback: a binary ``(n_users, n_items)`` float32 click matrix.

    Items :math:`v_i\sim\mathcal N(0,I_8)`; users are a cluster centre :math:`\sim\mathcal N(0,1.5^2I)`
    plus :math:`\mathcal N(0,0.7^2I)`; logits :math:`2u^\top v/\sqrt8-0.8\log(\mathrm{rank}_i)` with
    shuffled popularity ranks; each user clicks the top :math:`N_u` items of logits plus Gumbel
    noise (sampling without replacement), :math:`N_u=\mathrm{clip}(\mathrm{lognormal}(\log25,0.6),5,150)`.
    """
    if n_users < 1 or n_items < 5 or latent_dim < 1 or n_clusters < 1:
        raise ValueError("need n_users >= 1, n_items >= 5, latent_dim >= 1 and n_clusters >= 1")
    g = torch.Generator().manual_seed(seed)
    items = randn(n_items, latent_dim, generator=g)
    ranks = randperm(n_items, generator=g).float() + 1
    centres = 1.5 * randn(n_clusters, latent_dim, generator=g)
    cluster = randint(0, n_clusters, (n_users,), generator=g)
    users = centres[cluster] + 0.7 * randn(n_users, latent_dim, generator=g)
    logits = 2 * users @ items.T / math.sqrt(latent_dim) - popularity * ranks.log()
    gumbel = -torch.log(-torch.log(rand(n_users, n_items, generator=g).clamp_min(1e-12)))
    n_clicks = (math.log(25) + 0.6 * randn(n_users, generator=g)).exp().round().clamp(5, min(150, n_items)).long()
    order = (logits + gumbel).argsort(dim=1, descending=True)
    clicks = torch.zeros(n_users, n_items)
    mask = torch.arange(n_items)[None, :] < n_clicks[:, None]
    clicks.scatter_(1, order, mask.float())
    return clicks


def toy2d(name: str = "moons", n: int = 2000, seed: int = 0) -> torch.Tensor:
    """Two-dimensional toy densities, float32 of shape ``(n, 2)``.

    ``moons``: scikit-learn's two moons with noise 0.05, scaled by 2 and shifted by -0.5 in y (the
    scaling of the companion code of :cite:`lai2025principles`); ``checkerboard``: uniform on the
    black squares of a 4x4 board on [-2, 2]^2; ``rings``: two concentric noisy circles.
    """
    check_choice("toy density", name, TOYS)
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    g = torch.Generator().manual_seed(seed)
    if name == "moons":
        from sklearn.datasets import make_moons

        x, _ = make_moons(n_samples=n, noise=0.05, random_state=seed)
        x = torch.as_tensor(x, dtype=torch.float32) * 2
        x[:, 1] -= 0.5
        return x[randperm(n, generator=g)]
    if name == "checkerboard":
        x1 = rand(n, generator=g) * 4 - 2
        col = torch.floor(x1 + 2)
        row = 2 * randint(0, 2, (n,), generator=g).float() + col % 2
        x2 = row + rand(n, generator=g) - 2
        return torch.stack([x1, x2], 1)
    r = torch.where(rand(n, generator=g) < 0.5, 1.0, 2.0) + 0.08 * randn(n, generator=g)  # rings
    angle = 2 * math.pi * rand(n, generator=g)
    return torch.stack([r * torch.cos(angle), r * torch.sin(angle)], 1)
