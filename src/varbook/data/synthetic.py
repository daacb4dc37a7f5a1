"""Synthetic data generators."""

from __future__ import annotations

import math

import torch


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
    items = torch.randn(n_items, latent_dim, generator=g)
    ranks = torch.randperm(n_items, generator=g).float() + 1
    centres = 1.5 * torch.randn(n_clusters, latent_dim, generator=g)
    cluster = torch.randint(n_clusters, (n_users,), generator=g)
    users = centres[cluster] + 0.7 * torch.randn(n_users, latent_dim, generator=g)
    logits = 2 * users @ items.T / math.sqrt(latent_dim) - popularity * ranks.log()
    gumbel = -torch.log(-torch.log(torch.rand(n_users, n_items, generator=g).clamp_min(1e-12)))
    n_clicks = (math.log(25) + 0.6 * torch.randn(n_users, generator=g)).exp().round().clamp(5, min(150, n_items)).long()
    order = (logits + gumbel).argsort(dim=1, descending=True)
    clicks = torch.zeros(n_users, n_items)
    mask = torch.arange(n_items)[None, :] < n_clicks[:, None]
    clicks.scatter_(1, order, mask.float())
    return clicks
