"""Run-time helpers shared by every chapter: device, seeding, profiles, timing and memory.

Nothing here depends on global state beyond what the caller asks for: functions take the
profile, seed and device they need, and environment variables only supply defaults.
"""

from __future__ import annotations

import math
import os
import random
import resource
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

PROFILES = ("smoke", "full")
"""The allowed profiles: ``smoke`` (CPU, at most 90 s) and ``full`` (one GPU, at most 5 minutes)."""


def check_choice(what: str, value, choices):
    """Return ``value`` if it is one of ``choices``, else raise a :class:`ValueError` naming them.

    >>> check_choice("sampler", "ddim", ("ddpm", "ddim"))
    'ddim'
    >>> check_choice("sampler", "euler", ("ddpm", "ddim"))
    Traceback (most recent call last):
    ...
    ValueError: unknown sampler 'euler': use one of ddpm, ddim
    """
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}: use one of {', '.join(map(str, choices))}")
    return value


class NonFiniteLossError(FloatingPointError):
    """Raised when a training loss becomes NaN or infinite."""


def resolve_profile(profile: str | None = None) -> str:
    """Return the validated profile name.

    ``profile`` wins; if it is ``None`` or empty, the environment variable ``VARBOOK_PROFILE``
    is used, and ``"smoke"`` if that is unset. Anything else than :data:`PROFILES` raises a
    :class:`ValueError` that names the allowed values.
    """
    if not profile:
        profile = os.environ.get("VARBOOK_PROFILE") or "smoke"
    name = str(profile).strip().lower()
    if name not in PROFILES:
        raise ValueError(
            f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)} "
            "(papermill parameter `profile` or environment variable VARBOOK_PROFILE)"
        )
    return name


def device(name: str | None = None) -> torch.device:
    """The compute device: ``name`` if given, else ``VARBOOK_DEVICE``, else CUDA when present, else CPU."""
    name = name or os.environ.get("VARBOOK_DEVICE")
    if name:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was requested but CUDA is not available")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(dev: torch.device | str | None = None) -> str:
    """A human-readable name of the device (the GPU model for CUDA)."""
    dev = torch.device(dev) if dev is not None else device()
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"CPU ({os.cpu_count()} cores)"


def seed_all(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU ``torch.Generator`` with that seed."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def check_finite(loss: torch.Tensor | float, step: int | None = None, what: str = "training loss") -> None:
    """Stop training with a clear message when ``loss`` is NaN or infinite."""
    value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    if not math.isfinite(value):
        where = f" at step {step}" if step is not None else ""
        raise NonFiniteLossError(f"{what} became {value}{where}; lower the learning rate or check the inputs")


def descend(
    optimizer: torch.optim.Optimizer, loss: torch.Tensor, step: int | None = None, what: str = "training loss"
) -> None:
    """One optimiser step on ``loss``: stop with a clear message if it is not finite, then backpropagate and step."""
    check_finite(loss, step, what)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


class History(dict[str, list[float]]):
    """What every training loop returns: one list of logged values per quantity, in logging order.

    The training-loop contract of the library: a loop steps through :func:`descend`, takes
    ``desc`` (a progress-bar label; ``None`` means silent) and returns a :class:`History`.

    >>> h = History()
    >>> h.log(loss=2.0, accuracy=0.5)
    >>> h.log(loss=1.0)
    >>> h["loss"], h.last("loss")
    ([2.0, 1.0], 1.0)
    """

    def log(self, **values: float | torch.Tensor) -> None:
        """Append one value to each named quantity."""
        for name, value in values.items():
            self.setdefault(name, []).append(float(value))

    def last(self, name: str) -> float:
        """The latest value of ``name``."""
        return self[name][-1]


def peak_memory_bytes(dev: torch.device | None = None) -> int:
    """Peak memory of this process: CUDA max allocated on a GPU, peak resident set size on CPU."""
    dev = dev or device()
    if dev.type == "cuda":
        return int(torch.cuda.max_memory_allocated(dev))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


@dataclass
class Meter:
    """Wall-clock timer and peak-memory meter; use as a context manager or call :meth:`stop`.

    >>> with Meter() as m:
    ...     pass
    >>> m.seconds >= 0
    True
    """

    dev: torch.device = field(default_factory=device)
    start: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0
    peak_bytes: int = 0

    def __enter__(self) -> Meter:
        self.start = time.perf_counter()
        if self.dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.dev)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> Meter:
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        self.seconds = time.perf_counter() - self.start
        self.peak_bytes = peak_memory_bytes(self.dev)
        return self


def progress(iterable=None, **kwargs):
    """A progress bar (``tqdm.auto``) that stays quiet in batch execution.

    When the book runner executes a chapter (``VARBOOK_BATCH=1``) the bar is written to
    stdout once at the start and once at the end, so the built page shows the final bar
    instead of hundreds of redraws.
    """
    if os.environ.get("VARBOOK_BATCH") == "1":
        from tqdm import tqdm as std_tqdm

        kwargs.setdefault("file", sys.stdout)
        kwargs.setdefault("mininterval", 1e9)
        kwargs.setdefault("ascii", True)
        kwargs.setdefault("ncols", 80)
        return std_tqdm(iterable, **kwargs)
    from tqdm.auto import tqdm as auto_tqdm

    return auto_tqdm(iterable, **kwargs)


def setup(profile: str | None, seed: int, dev: str | None = None) -> tuple[str, int, torch.device]:
    """Validate a chapter's parameters, seed everything and print what the chapter runs on."""
    profile = resolve_profile(profile)
    seed_all(seed)
    dev_ = device(dev)
    threads = f", {torch.get_num_threads()} torch threads" if dev_.type == "cpu" else ""
    print(f"device: {device_name(dev_)}{threads} | profile: {profile} | seed: {seed} | torch {torch.__version__}")
    return profile, seed, dev_


# -------------------------------------------------------------------------------------------------
# Random draws: the one helper every noisy function of the library draws through.
#
# A ``torch.Generator`` lives on one device, and torch refuses to draw with a CPU generator into a
# GPU tensor. These helpers draw on the generator's device (so a CPU generator gives the same numbers
# whatever the compute device), then move the result to ``device``. With ``generator=None`` they
# draw from torch's global generator directly on ``device``. On the CPU each returns exactly what the
# plain torch call returns (the same stream, bit for bit).
# -------------------------------------------------------------------------------------------------

DeviceLike = torch.device | str | None
"""A device, its name, or ``None`` (where the result was drawn)."""


def _size(size: tuple) -> tuple[int, ...]:
    """Accept ``f(2, 3)`` as well as ``f((2, 3))`` or ``f(torch.Size([2, 3]))``."""
    if len(size) == 1 and isinstance(size[0], tuple | list | torch.Size):
        return tuple(size[0])
    return tuple(size)


def draw_device(generator: torch.Generator | None, device: DeviceLike = None) -> torch.device | None:
    """Where a draw happens: on the generator's device when there is one, else on ``device``.

    >>> draw_device(torch.Generator(), "meta")
    device(type='cpu')
    >>> draw_device(None, "meta")
    device(type='meta')
    """
    if generator is not None:
        return generator.device
    return None if device is None else torch.device(device)


def _to(x: torch.Tensor, device: DeviceLike) -> torch.Tensor:
    return x if device is None else x.to(device)


def randn(
    *size, generator: torch.Generator | None = None, device: DeviceLike = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    r"""Standard normal draws of shape ``size``, from ``generator`` on its device, returned on ``device``.

    ``device=None`` leaves the result where it was drawn. On the CPU this is ``torch.randn``:

    >>> g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    >>> torch.equal(randn(2, 3, generator=g1), torch.randn(2, 3, generator=g2))
    True
    """
    out = torch.randn(_size(size), generator=generator, dtype=dtype, device=draw_device(generator, device))
    return _to(out, device)


def rand(
    *size, generator: torch.Generator | None = None, device: DeviceLike = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Uniform draws on :math:`[0, 1)` of shape ``size``; devices as in :func:`randn`."""
    out = torch.rand(_size(size), generator=generator, dtype=dtype, device=draw_device(generator, device))
    return _to(out, device)


def randint(
    low: int,
    high: int,
    size: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None = None,
    device: DeviceLike = None,
    dtype: torch.dtype = torch.int64,
) -> torch.Tensor:
    """Integers drawn uniformly from ``[low, high)``, of shape ``size``; devices as in :func:`randn`."""
    out = torch.randint(low, high, tuple(size), generator=generator, dtype=dtype, device=draw_device(generator, device))
    return _to(out, device)


def randperm(
    n: int, generator: torch.Generator | None = None, device: DeviceLike = None, dtype: torch.dtype = torch.int64
) -> torch.Tensor:
    """A random permutation of ``0 .. n - 1``; devices as in :func:`randn`."""
    out = torch.randperm(n, generator=generator, dtype=dtype, device=draw_device(generator, device))
    return _to(out, device)


def bernoulli(p: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draws of :math:`\\mathrm{Bern}(p)` elementwise, on ``p``'s device and with ``p``'s dtype."""
    out = torch.bernoulli(_to(p, draw_device(generator, p.device)), generator=generator)
    return out.to(p.device)


def multinomial(
    probs: torch.Tensor, num_samples: int, replacement: bool = False, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Category indices drawn with weights ``probs`` (rows of a matrix, or one vector), on ``probs``' device."""
    src = _to(probs, draw_device(generator, probs.device))
    return torch.multinomial(src, num_samples, replacement, generator=generator).to(probs.device)


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`randn` with the shape, dtype and device of ``x`` (``torch.randn_like`` on the CPU)."""
    return randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def rand_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`rand` with the shape, dtype and device of ``x`` (``torch.rand_like`` on the CPU)."""
    return rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
