"""Peak activation memory, measured from real tensor lifetimes.

A `TorchDispatchMode` sees every op's output tensors during an inference pass. Each
output's storage is counted once while any tensor viewing it is alive (CPython frees a
tensor as soon as its last reference goes, and a `weakref.finalize` tells us), so the
running total is the memory an inference engine without in-place reuse would hold. The
maximum of that total is the peak. Weights and buffers are excluded by storage pointer.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from edgenas.cost.flops import example_input


class _LiveStorageTracker(TorchDispatchMode):
    """Running total and peak of bytes held by live activation storages."""

    def __init__(self, excluded: set[int]) -> None:
        super().__init__()
        self.excluded = excluded
        self.live: dict[int, list[int]] = {}  # storage ptr -> [nbytes, live tensor count]
        self.current = 0
        self.peak = 0

    def track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        ptr, nbytes = storage.data_ptr(), storage.nbytes()
        if nbytes == 0 or ptr in self.excluded:
            return
        entry = self.live.get(ptr)
        if entry is None:
            self.live[ptr] = [nbytes, 1]
            self.current += nbytes
            self.peak = max(self.peak, self.current)
        else:
            entry[1] += 1
        weakref.finalize(t, self._release, ptr)

    def _release(self, ptr: int) -> None:
        entry = self.live.get(ptr)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.track(t)
        return out


def peak_activation_bytes(model: nn.Module, input_shape: tuple[int, int, int], batch: int = 1) -> int:
    """Peak bytes of simultaneously live activations (input included) in one eval forward pass."""
    was_training = model.training
    model.eval()
    excluded = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    x = example_input(model, input_shape, batch)
    tracker = _LiveStorageTracker(excluded)
    try:
        with torch.no_grad(), tracker:
            tracker.track(x)  # the caller holds the input for the whole pass
            out = model(x)
            del out
    finally:
        model.train(was_training)
    return tracker.peak
