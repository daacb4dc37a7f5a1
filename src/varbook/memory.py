"""Autograd memory: the bytes that autograd saves for the backward pass, on any device.

One meter, :class:`SavedTensors`, built on ``torch.autograd.graph.saved_tensors_hooks``; the
chapters that compare the memory of training steps (``wta_crs``, ``niw_meta``) read it.
"""

from __future__ import annotations

import torch


class SavedTensors:
    """Counts the bytes autograd saves for backward while active: ``live`` now, ``peak`` so far, ``bytes`` in all.

    The one device-independent meter of autograd memory in the library, built on
    ``torch.autograd.graph.saved_tensors_hooks``: a saved tensor counts from when autograd saves
    it until its graph is freed (``live``; ``peak`` is the largest ``live`` seen).

    * ``dedupe=False`` (default): every save counts its tensor's bytes, so a tensor saved twice
      counts twice and saved parameters count although they are not copies (an upper bound).
    * ``dedupe=True``: each underlying storage counts once (its whole size), however many saved
      tensors view it.
    * ``exclude``: tensors (e.g. the model's parameters) whose storages never count.

    ``bytes`` is the total of the distinct storages saved while active (with ``dedupe``) or of
    every save (without), whether or not they have been freed since.

    >>> a = torch.ones(100, requires_grad=True)  # 400 bytes
    >>> with SavedTensors() as meter:
    ...     loss = (a * a).sin().sum()  # mul saves a twice, sin its input
    >>> meter.live, meter.peak
    (1200, 1200)
    >>> del loss; meter.live
    0

    An output that its own backward saves (``exp``, ``sigmoid``) keeps its count in ``live``
    after the graph is freed (autograd holds that saved value in a reference cycle); ``peak``
    is not affected.
    """

    def __init__(self, exclude=(), dedupe: bool = False) -> None:
        self.exclude = {p.untyped_storage().data_ptr() for p in exclude}
        self.dedupe = dedupe
        self.live = 0
        self.peak = 0
        self._total = 0
        self._seen: dict[int, int] = {}
        self._refs: dict[int, int] = {}
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    @property
    def bytes(self) -> int:
        """Bytes saved while active: distinct storages with ``dedupe``, every save without."""
        return sum(self._seen.values()) if self.dedupe else self._total

    def _pack(self, t: torch.Tensor) -> _SavedBox:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr in self.exclude:
            return _SavedBox(t, self, None, 0)
        if not self.dedupe:
            n = t.numel() * t.element_size()
            self._total += n
            return _SavedBox(t, self, None, n)
        self._seen[ptr] = storage.nbytes()
        self._refs[ptr] = self._refs.get(ptr, 0) + 1
        return _SavedBox(t, self, ptr, storage.nbytes() if self._refs[ptr] == 1 else 0)

    def _release(self, box: _SavedBox) -> None:
        if box.ptr is not None:
            self._refs[box.ptr] -= 1
            if self._refs[box.ptr] == 0:
                del self._refs[box.ptr]
                self.live -= self._seen[box.ptr]
            return
        self.live -= box.nbytes

    @staticmethod
    def _unpack(box: _SavedBox) -> torch.Tensor:
        return box.tensor

    def __enter__(self) -> SavedTensors:
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)


class _SavedBox:
    __slots__ = ("tensor", "meter", "ptr", "nbytes")

    def __init__(self, tensor: torch.Tensor, meter: SavedTensors, ptr: int | None, nbytes: int):
        self.tensor, self.meter, self.ptr, self.nbytes = tensor, meter, ptr, nbytes
        meter.live += nbytes
        meter.peak = max(meter.peak, meter.live)

    def __del__(self) -> None:
        self.meter._release(self)
