r"""Linear measurement operators :math:`y = Ax` on batches of flat square images ``(batch, side * side)``.

Each operator gives :math:`A`, its adjoint :math:`A^\top` (so that :math:`\langle Ax, y\rangle = \langle x, A^\top y\rangle`),
a pseudo-inverse :math:`A^\dagger` and its dense matrix (for closed-form posteriors of small images).
"""

from __future__ import annotations

import math

import torch

from ..runtime import rand


class LinearOperator:
    """Base class: subclasses define ``forward``, ``adjoint`` and ``pinv`` on flat images of side ``side``."""

    side: int
    n_out: int

    @property
    def n_in(self) -> int:
        return self.side * self.side

    def _check(self, x: torch.Tensor, n: int, what: str) -> None:
        if x.dim() != 2 or x.shape[1] != n:
            raise ValueError(f"{type(self).__name__}: {what} must have shape (batch, {n}), got {tuple(x.shape)}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x, self.n_in, "images")
        return self.forward(x)

    def T(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802 (the adjoint, as in the equations)
        self._check(y, self.n_out, "measurements")
        return self.adjoint(y)

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor:
        self._check(y, self.n_out, "measurements")
        return self.pinv(y)

    def matrix(self, dtype=torch.float64) -> torch.Tensor:
        """The dense ``(n_out, n_in)`` matrix of the operator (small images only)."""
        return self.forward(torch.eye(self.n_in, dtype=dtype)).T

    def forward(self, x):
        raise NotImplementedError

    def adjoint(self, y):
        raise NotImplementedError

    def pinv(self, y):
        raise NotImplementedError


class Inpainting(LinearOperator):
    """Keep the pixels where ``mask`` is true: :math:`A` selects them, :math:`A^\\top` zero-fills, :math:`A^\\dagger = A^\\top`."""

    def __init__(self, mask: torch.Tensor):
        mask = torch.as_tensor(mask, dtype=torch.bool).flatten()
        side = math.isqrt(mask.numel())
        if side * side != mask.numel():
            raise ValueError(f"the mask must cover a square image, got {mask.numel()} pixels")
        if not mask.any():
            raise ValueError("the mask keeps no pixel")
        self.mask, self.side = mask, side
        self.index = torch.nonzero(mask).squeeze(1)
        self.n_out = int(mask.sum())

    @classmethod
    def random(cls, side: int, keep: float = 0.5, generator: torch.Generator | None = None) -> Inpainting:
        """A mask that keeps each pixel independently with probability ``keep``."""
        if not 0 < keep <= 1:
            raise ValueError(f"keep must lie in (0, 1], got {keep}")
        return cls(rand(side * side, generator=generator) < keep)

    def forward(self, x):
        return x[:, self.index.to(x.device)]

    def adjoint(self, y):
        out = torch.zeros(y.shape[0], self.n_in, dtype=y.dtype, device=y.device)
        out[:, self.index.to(y.device)] = y
        return out

    def pinv(self, y):
        return self.adjoint(y)


class BatchInpainting(LinearOperator):
    r"""Inpainting with a mask of its own for every image of a batch: image ``i`` keeps the pixels ``index[i]``.

    Every mask keeps the same number ``m`` of pixels, so the measurements are ``(batch, m)`` as for
    :class:`Inpainting`; :math:`A` gathers the kept pixels of each image, :math:`A^\top = A^\dagger` zero-fills.
    The operator acts only on batches of its own size (``op[i:j]`` is the operator of images ``i`` to ``j``).
    """

    def __init__(self, index: torch.Tensor, side: int):
        index = torch.as_tensor(index, dtype=torch.long)
        if index.dim() != 2 or index.shape[1] == 0:
            raise ValueError(f"index must be (batch, m) with m >= 1, got {tuple(index.shape)}")
        if int(index.min()) < 0 or int(index.max()) >= side * side:
            raise ValueError(f"pixel indices must lie in [0, {side * side})")
        self.index, self.side, self.n_out = index, side, index.shape[1]

    @classmethod
    def random(
        cls, batch: int, side: int, keep: float = 0.5, generator: torch.Generator | None = None
    ) -> BatchInpainting:
        """A fresh mask per image, each keeping ``round(keep * side**2)`` pixels chosen uniformly without replacement."""
        if not 0 < keep <= 1:
            raise ValueError(f"keep must lie in (0, 1], got {keep}")
        n = side * side
        m = max(1, round(keep * n))
        order = rand(batch, n, generator=generator).argsort(dim=1)  # a uniform random permutation per image
        return cls(order[:, :m].sort(dim=1).values, side)

    @property
    def masks(self) -> torch.Tensor:
        """The ``(batch, side * side)`` boolean masks."""
        out = torch.zeros(len(self.index), self.n_in, dtype=torch.bool)
        return out.scatter_(1, self.index, True)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, rows: slice) -> BatchInpainting:
        return BatchInpainting(self.index[rows], self.side)

    def image(self, i: int) -> Inpainting:
        """The single-mask operator of image ``i``."""
        return Inpainting(self.masks[i])

    def matrix(self, dtype=torch.float64) -> torch.Tensor:
        raise TypeError("BatchInpainting has one matrix per image: use op.image(i).matrix()")

    def _check_batch(self, z: torch.Tensor) -> None:
        if z.shape[0] != len(self.index):
            raise ValueError(f"BatchInpainting of {len(self.index)} masks applied to a batch of {z.shape[0]}")

    def forward(self, x):
        self._check_batch(x)
        return x.gather(1, self.index.to(x.device))

    def adjoint(self, y):
        self._check_batch(y)
        out = torch.zeros(y.shape[0], self.n_in, dtype=y.dtype, device=y.device)
        return out.scatter_(1, self.index.to(y.device), y)

    def pinv(self, y):
        return self.adjoint(y)


class SuperResolution(LinearOperator):
    """Average pooling by ``factor``: :math:`A` averages blocks, :math:`A^\\top` spreads each value over its block
    divided by :math:`f^2`, and :math:`A^\\dagger` copies each value over its block (nearest-neighbour upsampling)."""

    def __init__(self, side: int, factor: int = 2):
        if factor < 1 or side % factor:
            raise ValueError(f"the side {side} must be a multiple of the factor {factor}")
        self.side, self.factor = side, factor
        self.n_out = (side // factor) ** 2

    def _img(self, x, s):
        return x.reshape(x.shape[0], 1, s, s)

    def forward(self, x):
        return torch.nn.functional.avg_pool2d(self._img(x, self.side), self.factor).flatten(1)

    def adjoint(self, y):
        up = torch.nn.functional.interpolate(self._img(y, self.side // self.factor), scale_factor=self.factor)
        return up.flatten(1) / self.factor**2

    def pinv(self, y):
        return self.adjoint(y) * self.factor**2


class GaussianBlur(LinearOperator):
    r"""Circular convolution with a Gaussian kernel of width ``sigma`` pixels, in the Fourier domain.

    :math:`A = F^{-1}\operatorname{diag}(\hat k)F`, :math:`A^\top = F^{-1}\operatorname{diag}(\overline{\hat k})F`, and
    :math:`A^\dagger` inverts the frequencies with :math:`|\hat k| >` ``rcond`` and zeroes the rest.
    """

    def __init__(self, side: int, sigma: float = 1.0, rcond: float = 1e-3):
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.side, self.sigma, self.rcond, self.n_out = side, sigma, rcond, side * side
        d = torch.arange(side, dtype=torch.float64)
        d = torch.minimum(d, side - d)  # circular distance to pixel 0
        k1 = torch.exp(-(d**2) / (2 * sigma**2))
        kernel = k1[:, None] * k1[None, :]
        self.khat = torch.fft.fft2(kernel / kernel.sum())

    def _apply(self, x, spectrum):
        img = x.reshape(x.shape[0], self.side, self.side)
        out = torch.fft.ifft2(torch.fft.fft2(img.to(torch.float64)) * spectrum.to(x.device)).real
        return out.reshape(x.shape[0], -1).to(x.dtype)

    def forward(self, x):
        return self._apply(x, self.khat)

    def adjoint(self, y):
        return self._apply(y, self.khat.conj())

    def pinv(self, y):
        inv = torch.where(self.khat.abs() > self.rcond, 1 / self.khat, torch.zeros_like(self.khat))
        return self._apply(y, inv)
