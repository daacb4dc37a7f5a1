"""A plain multilayer perceptron, the one every chapter reuses."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


class MLP(nn.Sequential):
    """``Linear -> activation`` for every hidden width, then a final ``Linear`` (no output activation).

    >>> MLP(4, [8, 8], 2)(torch.zeros(3, 4)).shape  # doctest: +SKIP
    torch.Size([3, 2])
    """

    def __init__(self, d_in: int, hidden: Sequence[int], d_out: int, activation: type[nn.Module] = nn.ReLU):
        layers: list[nn.Module] = []
        width = d_in
        for h in hidden:
            layers += [nn.Linear(width, h), activation()]
            width = h
        layers.append(nn.Linear(width, d_out))
        super().__init__(*layers)
        self.d_in, self.d_out = d_in, d_out

    def features(self, x):
        """The activations of the last hidden layer (every module but the final ``Linear``)."""
        for layer in list(self)[:-1]:
            x = layer(x)
        return x
