r"""Few-shot tasks: SineLine regression tasks and N-way K-shot classification episodes.

Both come as batches of tasks with a leading task dimension, so a model can be applied to
every task at once with ``torch.func.vmap``.

* :func:`sineline` draws the SineLine tasks of NIW-Meta's regression experiment
  :cite:`kim2024hierarchical`: each task is a sine :math:`y=A\sin(x-\varphi)`,
  :math:`A\in[0.1,5]`, :math:`\varphi\in[0,\pi]`, or a line :math:`y=ax+b`,
  :math:`a,b\in[-3,3]`, observed at :math:`x\in[-5,5]` with Gaussian noise.
* :func:`episodes` draws N-way K-shot episodes from a labelled set whose classes are split
  into meta-training and meta-test classes (:func:`class_split`), e.g. the digits of
  :func:`varbook.data.digits` or :func:`varbook.data.mnist5k`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .. import runtime


@dataclass(frozen=True)
class RegressionTasks:
    """A batch of ``T`` regression tasks: support ``(T, K, 1)``, query ``(T, Q, 1)``.

    ``kind`` is 0 for a sine and 1 for a line; ``coef`` holds ``(A, φ)`` or ``(a, b)``, shape ``(T, 2)``.
    """

    x_support: torch.Tensor
    y_support: torch.Tensor
    x_query: torch.Tensor
    y_query: torch.Tensor
    kind: torch.Tensor
    coef: torch.Tensor

    def __len__(self) -> int:
        return self.x_support.shape[0]

    @property
    def x_all(self) -> torch.Tensor:
        """Support and query inputs together, ``(T, K + Q, 1)``."""
        return torch.cat([self.x_support, self.x_query], 1)

    @property
    def y_all(self) -> torch.Tensor:
        """Support and query targets together, ``(T, K + Q, 1)``."""
        return torch.cat([self.y_support, self.y_query], 1)

    def curve(self, x: torch.Tensor) -> torch.Tensor:
        """The noiseless function of every task at inputs ``x`` of shape ``(T, n, 1)`` or ``(n, 1)``."""
        if x.dim() == 2:
            x = x.expand(len(self), *x.shape)
        c0, c1 = self.coef[:, None, None, 0], self.coef[:, None, None, 1]
        sine = c0 * torch.sin(x - c1)
        line = c0 * x + c1
        return torch.where(self.kind[:, None, None] == 0, sine, line)


def sineline(
    n_tasks: int,
    n_support: int = 5,
    n_query: int = 10,
    noise: float = 0.3,
    p_sine: float = 0.5,
    *,
    generator: torch.Generator | None = None,
    device: runtime.DeviceLike = None,
    dtype: torch.dtype = torch.float32,
) -> RegressionTasks:
    r"""Draw ``n_tasks`` SineLine tasks :cite:`kim2024hierarchical`, each a sine or a line (probability ``p_sine``).

    Sine: :math:`A\sim U[0.1,5]`, :math:`\varphi\sim U[0,\pi]`; line: :math:`a,b\sim U[-3,3]`;
    inputs :math:`x\sim U[-5,5]`; targets :math:`f(x)+\sigma\varepsilon` with :math:`\sigma=`
    ``noise``. Every draw comes from ``generator``.

    >>> t = sineline(4, generator=torch.Generator().manual_seed(0))
    >>> t.x_support.shape, t.y_query.shape
    (torch.Size([4, 5, 1]), torch.Size([4, 10, 1]))
    """
    if n_tasks < 1 or n_support < 1 or n_query < 0:
        raise ValueError(f"need n_tasks >= 1, n_support >= 1 and n_query >= 0, got {n_tasks}, {n_support}, {n_query}")
    if not 0 <= p_sine <= 1 or noise < 0:
        raise ValueError(f"need 0 <= p_sine <= 1 and noise >= 0, got {p_sine} and {noise}")

    def rand(*size: int) -> torch.Tensor:
        return runtime.rand(*size, generator=generator, device=device, dtype=dtype)

    kind = (rand(n_tasks) >= p_sine).long()
    u = rand(n_tasks, 2)
    sine = torch.stack([0.1 + 4.9 * u[:, 0], math.pi * u[:, 1]], 1)
    line = -3 + 6 * u
    coef = torch.where(kind[:, None] == 0, sine, line)
    n = n_support + n_query
    x = -5 + 10 * rand(n_tasks, n, 1)
    tasks = RegressionTasks(x, x, x, x, kind, coef)
    y = tasks.curve(x) + noise * runtime.randn(n_tasks, n, 1, generator=generator, device=device, dtype=dtype)
    return RegressionTasks(x[:, :n_support], y[:, :n_support], x[:, n_support:], y[:, n_support:], kind, coef)


@dataclass(frozen=True)
class ClassSplit:
    """A labelled set cut by class: ``x`` of shape ``(N, *feature)``, labels ``y``, and the classes of each part."""

    x: torch.Tensor
    y: torch.Tensor
    train_classes: tuple[int, ...]
    test_classes: tuple[int, ...]


def class_split(name: str = "digits", test_classes: Sequence[int] = (6, 7, 8, 9), image: bool = True) -> ClassSplit:
    """All images of ``digits`` (8x8) or ``mnist5k`` (28x28) from :mod:`varbook.data`, classes split for meta-learning.

    The loaders' own train/test split is undone (every image is kept); the classes in
    ``test_classes`` are held out for meta-testing. ``image=True`` shapes ``x`` as ``(N, 1, H, W)``.
    """
    from . import digits, mnist5k

    loader = {"digits": digits, "mnist5k": mnist5k}[runtime.check_choice("data set", name, ("digits", "mnist5k"))]
    split = loader()
    x = torch.cat([split.x_train, split.x_test])
    y = torch.cat([split.y_train, split.y_test])
    if image:
        x = x.view(len(x), 1, *split.shape)
    test = tuple(sorted(int(c) for c in test_classes))
    if not test or not set(test) < set(range(split.n_classes)):
        raise ValueError(f"test_classes must be a non-empty proper subset of 0..{split.n_classes - 1}, got {test}")
    train = tuple(c for c in range(split.n_classes) if c not in test)
    return ClassSplit(x, y, train, test)


@dataclass(frozen=True)
class Episodes:
    """``E`` classification episodes: support ``(E, N*K, ...)``, query ``(E, N*Q, ...)``.

    Labels are episode-local, ``0 .. N-1``, ordered class by class; ``classes[e, j]`` is the
    original class of local label ``j``.
    """

    x_support: torch.Tensor
    y_support: torch.Tensor
    x_query: torch.Tensor
    y_query: torch.Tensor
    classes: torch.Tensor


def episodes(
    x: torch.Tensor,
    y: torch.Tensor,
    classes: Sequence[int],
    n_way: int,
    k_shot: int,
    n_query: int,
    n_episodes: int,
    *,
    generator: torch.Generator | None = None,
) -> Episodes:
    """Draw ``n_episodes`` N-way K-shot episodes among ``classes``, all at once.

    Each episode picks ``n_way`` distinct classes uniformly, then ``k_shot + n_query`` distinct
    examples of each (the first ``k_shot`` form the support). Raises :class:`ValueError` when a
    class has fewer than ``k_shot + n_query`` examples, there are fewer than ``n_way`` classes,
    or a class is listed twice.
    """
    classes = [int(c) for c in classes]
    if n_way < 1 or k_shot < 1 or n_query < 0 or n_episodes < 1:
        raise ValueError("need n_way >= 1, k_shot >= 1, n_query >= 0 and n_episodes >= 1")
    if len(set(classes)) != len(classes):
        raise ValueError(f"duplicate classes {classes}: each class may appear once")
    if len(set(classes)) < n_way:
        raise ValueError(f"{n_way}-way episodes need at least {n_way} classes, got {sorted(set(classes))}")
    if y.shape != x.shape[:1]:
        raise ValueError(f"x and y disagree: {tuple(x.shape)} and {tuple(y.shape)}")
    members = [torch.nonzero(y == c).flatten() for c in classes]
    per = k_shot + n_query
    counts = torch.tensor([len(m) for m in members])
    if int(counts.min()) < per:
        raise ValueError(f"every class needs {per} examples; the smallest has {int(counts.min())}")
    table = torch.full((len(classes), int(counts.max())), -1, dtype=torch.long)
    for i, m in enumerate(members):
        table[i, : len(m)] = m.cpu()
    cls = runtime.rand(n_episodes, len(classes), generator=generator).argsort(1)[:, :n_way]
    keys = runtime.rand(n_episodes, n_way, table.shape[1], generator=generator)
    keys = keys.masked_fill(table[cls] < 0, 2.0)  # padding sorts last
    pick = keys.argsort(-1)[..., :per]
    idx = table[cls].gather(-1, pick).to(x.device)  # (E, N, K + Q)
    labels = torch.arange(n_way, device=x.device)[None, :, None].expand(n_episodes, n_way, per)
    flat = x.shape[1:]
    sup, qry = idx[..., :k_shot].reshape(n_episodes, -1), idx[..., k_shot:].reshape(n_episodes, -1)
    return Episodes(
        x[sup].view(n_episodes, -1, *flat),
        labels[..., :k_shot].reshape(n_episodes, -1),
        x[qry].view(n_episodes, -1, *flat),
        labels[..., k_shot:].reshape(n_episodes, -1),
        torch.tensor(classes)[cls].to(x.device),
    )


__all__ = ["ClassSplit", "Episodes", "RegressionTasks", "class_split", "episodes", "sineline"]
