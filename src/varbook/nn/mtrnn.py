r"""A leaky multi-timescale RNN (MTRNN) cell, batched over a leading dimension of models.

One layer of the PV-RNN's deterministic units :cite:`ahmadi2019novel`:

.. math:: h_t=\Big(1-\frac1\tau\Big)h_{t-1}+\frac1\tau\big(W_{dd}d_{t-1}+W_{zd}z_t+W_{hd}d^{\rm above}_t+b\big),
   \qquad d_t=\tanh h_t .

A large time constant :math:`\tau` makes a slow unit, :math:`\tau=1` an ordinary RNN. Every weight
carries a leading dimension of ``n_models`` independent models, so that several networks (for
example one per meta-prior weight) train as one batched network: inputs are ``(n_models, batch, ·)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def batched_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight^T + bias`` for each model: ``x`` is ``(M, B, in)``, ``weight`` ``(M, out, in)``, ``bias`` ``(M, out)``.

    >>> batched_linear(torch.ones(2, 3, 4), torch.ones(2, 5, 4)).shape
    torch.Size([2, 3, 5])
    """
    if x.dim() != 3 or weight.dim() != 3 or x.shape[0] != weight.shape[0] or x.shape[-1] != weight.shape[-1]:
        raise ValueError(f"batched_linear needs x (M, B, in) and weight (M, out, in), got {tuple(x.shape)}, "
                         f"{tuple(weight.shape)}")  # fmt: skip
    out = torch.bmm(x, weight.transpose(1, 2))
    return out if bias is None else out + bias.unsqueeze(1)


def init_weight(n_models: int, out_features: int, in_features: int) -> nn.Parameter:
    """Uniform :math:`\\pm1/\\sqrt{\\rm in}` weights (PyTorch's default for a linear layer), one set per model."""
    bound = 1.0 / math.sqrt(max(in_features, 1))
    return nn.Parameter(torch.empty(n_models, out_features, in_features).uniform_(-bound, bound))


class MTRNNCell(nn.Module):
    r"""One leaky MTRNN layer with time constant ``tau`` (eq. of the module docstring).

    ``inputs`` are the sizes of the vectors concatenated into the drive
    :math:`[d_{t-1}, z_t, d^{\rm above}_t]` (the first is the layer's own output, of size ``hidden``).

    >>> cell = MTRNNCell(hidden=3, extra=(2,), tau=2.0, n_models=1)
    >>> h, d = cell(torch.zeros(1, 4, 3), torch.zeros(1, 4, 3), torch.zeros(1, 4, 2))
    >>> h.shape, d.shape
    (torch.Size([1, 4, 3]), torch.Size([1, 4, 3]))
    """

    def __init__(self, hidden: int, extra: tuple[int, ...], tau: float, n_models: int = 1) -> None:
        super().__init__()
        if hidden < 1 or n_models < 1 or any(e < 0 for e in extra):
            got = (hidden, n_models, extra)
            raise ValueError(f"MTRNNCell needs hidden, n_models >= 1 and sizes >= 0, got {got}")
        if not tau >= 1.0:
            raise ValueError(f"the time constant tau must be >= 1, got {tau}")
        self.hidden, self.extra, self.tau = hidden, tuple(extra), float(tau)
        self.weight = init_weight(n_models, hidden, hidden + sum(extra))
        self.bias = nn.Parameter(torch.zeros(n_models, hidden))

    def forward(self, h: torch.Tensor, d: torch.Tensor, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: the new internal state :math:`h_t` and output :math:`d_t=\\tanh h_t`."""
        drive = batched_linear(torch.cat((d, *inputs), dim=-1), self.weight, self.bias)
        h = (1.0 - 1.0 / self.tau) * h + drive / self.tau
        return h, torch.tanh(h)
