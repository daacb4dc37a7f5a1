r"""2-D trajectories from a probabilistic finite-state machine (PFSM) of motion primitives.

Three primitives, each a closed path that starts and ends at the origin (so that any sequence of
them is continuous): a clockwise circle on the left (A), a counter-clockwise circle on the right
(B) and one lobe of a figure-8 above (C). At each primitive boundary the next primitive is drawn
from a known transition matrix :math:`P` (no self-transitions), and Gaussian jitter is added. This
is the kind of data on which PV-RNN's meta-prior is studied :cite:`ahmadi2019novel`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from varbook import runtime

NAMES = ("A", "B", "C")
LENGTHS = (16, 16, 12)
"""Steps per primitive (A, B, C)."""
TRANSITIONS = torch.tensor([[0.0, 0.7, 0.3], [0.5, 0.0, 0.5], [0.6, 0.4, 0.0]], dtype=torch.float64)
"""The true transition probabilities :math:`P_{ij}=\\Pr(\\text{next}=j\\mid\\text{current}=i)`."""


def primitive(k: int, n: int | None = None) -> torch.Tensor:
    """The ``n`` points (default: :data:`LENGTHS`\\[k]) of primitive ``k``, the origin excluded at the start.

    >>> primitive(0).shape, bool(primitive(1)[-1].abs().max() < 1e-12)
    (torch.Size([16, 2]), True)
    """
    if k not in (0, 1, 2):
        raise ValueError(f"primitive index must be 0, 1 or 2, got {k}")
    n = LENGTHS[k] if n is None else n
    s = torch.arange(1, n + 1, dtype=torch.float64) / n
    if k == 0:  # clockwise circle centred (-0.5, 0), from the origin
        a = -2 * math.pi * s
        return torch.stack((-0.5 + 0.5 * torch.cos(a), 0.5 * torch.sin(a)), -1)
    if k == 1:  # counter-clockwise circle centred (0.5, 0), from the origin
        a = math.pi + 2 * math.pi * s
        return torch.stack((0.5 + 0.5 * torch.cos(a), 0.5 * torch.sin(a)), -1)
    return torch.stack((0.3 * torch.sin(2 * math.pi * s), 0.9 * torch.sin(math.pi * s)), -1)  # lobe above


@dataclass
class PFSMData:
    """Sequences ``x`` (N, T, 2), the primitive ``labels`` (N, T) of every step and the true ``transitions``."""

    x: torch.Tensor
    labels: torch.Tensor
    transitions: torch.Tensor


def pfsm_sequences(
    n_seq: int,
    length: int,
    *,
    jitter: float = 0.02,
    transitions: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> PFSMData:
    r"""``n_seq`` sequences of ``length`` steps: a uniform first primitive, then :math:`P`-distributed successors.

    >>> d = pfsm_sequences(4, 30, generator=torch.Generator().manual_seed(0))
    >>> d.x.shape, d.labels.shape
    (torch.Size([4, 30, 2]), torch.Size([4, 30]))
    """
    if n_seq < 1 or length < 1:
        raise ValueError(f"pfsm_sequences needs n_seq >= 1 and length >= 1, got {n_seq}, {length}")
    if jitter < 0:
        raise ValueError(f"jitter must be >= 0, got {jitter}")
    P = TRANSITIONS if transitions is None else transitions.to(torch.float64)
    if P.shape != (3, 3) or (P < 0).any() or not torch.allclose(P.sum(1), torch.ones(3, dtype=torch.float64)):
        raise ValueError("transitions must be a 3x3 row-stochastic matrix")
    paths = [primitive(k) for k in range(3)]
    xs, labels = [], []
    for _ in range(n_seq):
        k = int(runtime.randint(0, 3, (1,), generator=generator))
        pts: list[torch.Tensor] = []
        lab: list[torch.Tensor] = []
        while sum(p.shape[0] for p in pts) < length:
            pts.append(paths[k])
            lab.append(torch.full((len(paths[k]),), k))
            k = int(runtime.multinomial(P[k], 1, generator=generator))
        xs.append(torch.cat(pts)[:length])
        labels.append(torch.cat(lab)[:length])
    x = torch.stack(xs)
    x = x + jitter * runtime.randn(x.shape, generator=generator, dtype=torch.float64)
    return PFSMData(x.to(dtype), torch.stack(labels), P.clone())


def classify_points(x: torch.Tensor) -> torch.Tensor:
    """The primitive whose path passes nearest to each point of ``x`` (..., 2)."""
    curves = [primitive(k, 200).to(x.dtype).to(x.device) for k in range(3)]
    dist = torch.stack([torch.cdist(x.reshape(-1, 2), c).min(-1).values for c in curves], -1)
    return dist.argmin(-1).reshape(x.shape[:-1])


def primitive_runs(labels: torch.Tensor, min_len: int = 4) -> list[int]:
    """The sequence of primitives of one label sequence: runs shorter than ``min_len`` are dropped, repeats merged.

    >>> primitive_runs(torch.tensor([0] * 6 + [2] + [1] * 5 + [0] * 4))
    [0, 1, 0]
    """
    runs: list[tuple[int, int]] = []
    for v in labels.tolist():
        if runs and runs[-1][0] == v:
            runs[-1] = (v, runs[-1][1] + 1)
        else:
            runs.append((v, 1))
    out: list[int] = []
    for v, n in runs:
        if n >= min_len and (not out or out[-1] != v):
            out.append(v)
    return out


def transition_counts(sequences: list[list[int]]) -> torch.Tensor:
    """3x3 counts of consecutive primitives over several primitive sequences."""
    counts = torch.zeros(3, 3, dtype=torch.float64)
    for seq in sequences:
        for a, b in zip(seq[:-1], seq[1:], strict=True):
            counts[a, b] += 1
    return counts


def transition_tv(counts: torch.Tensor, transitions: torch.Tensor = TRANSITIONS) -> float:
    r"""Mean over rows of the total-variation distance :math:`\frac12\sum_j|\hat P_{ij}-P_{ij}|`.

    A row with no count counts as the largest distance, 1 (a primitive never generated, or never left).
    """
    tv = []
    for i in range(3):
        n = counts[i].sum()
        tv.append(1.0 if n == 0 else 0.5 * float((counts[i] / n - transitions[i].to(counts)).abs().sum()))
    return sum(tv) / 3
