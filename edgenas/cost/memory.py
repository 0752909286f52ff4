"""Peak activation memory of one inference pass: the `peak_memory_bytes` field of `Cost`.

Measured, not estimated: a dispatch mode sees the output tensors of every ATen op the
forward pass runs and follows each output's storage until the last Python tensor that
refers to it dies. So the count reflects what the model's code really keeps alive (skip
connections, lists of features, in-place ops, views) rather than an analytic guess that
assumes each layer frees its input. Kernel-internal workspaces (e.g. im2col buffers) are
not activations and are not seen.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from edgenas.cost._runtime import eval_mode, probe_input

StorageKey = tuple[str, int]


def _storage_key(t: torch.Tensor) -> tuple[StorageKey, int] | None:
    """(device, address) of the tensor's storage and its size; None for storage-less tensors."""
    try:
        storage = t.untyped_storage()
    except RuntimeError:  # sparse, meta-like or wrapper subclasses (the not-implemented error included)
        return None
    if storage.nbytes() == 0 or storage.data_ptr() == 0:
        return None
    return (str(t.device), storage.data_ptr()), storage.nbytes()


class LiveStorageTracker(TorchDispatchMode):
    """Tracks the total size of live activation storages and its running maximum.

    Each storage carries a count of the live tensor objects seen on it; a `weakref.finalize`
    on each tensor decrements it, and the storage leaves the total when the count reaches 0.
    Views share their base's storage, so it is counted once. Storages in `ignore`
    (parameters and buffers) are never counted.
    """

    def __init__(self, ignore: set[StorageKey]) -> None:
        super().__init__()
        self._ignore = ignore
        self._refs: dict[StorageKey, int] = {}
        self._sizes: dict[StorageKey, int] = {}
        self._tensor_keys: dict[int, StorageKey] = {}  # id(tensor) -> storage, for live tracked tensors
        self._finalizers: list[weakref.finalize] = []
        self.live_bytes = 0
        self.peak_bytes = 0

    def track(self, t: torch.Tensor) -> None:
        """Count `t`'s storage as live for as long as `t` is alive."""
        if id(t) in self._tensor_keys:  # in-place ops return their input object again
            return
        found = _storage_key(t)
        if found is None or found[0] in self._ignore:
            return
        key, nbytes = found
        if key in self._refs:
            self._refs[key] += 1
            if nbytes > self._sizes[key]:  # storage grew (resize_ of an out= tensor)
                self._add(nbytes - self._sizes[key])
                self._sizes[key] = nbytes
        else:
            self._refs[key] = 1
            self._sizes[key] = nbytes
            self._add(nbytes)
        self._tensor_keys[id(t)] = key
        self._finalizers.append(weakref.finalize(t, self._release, id(t), key))

    def detach_all(self) -> None:
        """Drop the finalizers still pending (tensors the caller keeps) so they outlive no measurement."""
        for fin in self._finalizers:
            fin.detach()
        self._finalizers.clear()

    def _add(self, nbytes: int) -> None:
        self.live_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)

    def _release(self, tensor_id: int, key: StorageKey) -> None:
        self._tensor_keys.pop(tensor_id, None)
        self._refs[key] -= 1
        if self._refs[key] == 0:
            del self._refs[key]
            self.live_bytes -= self._sizes.pop(key)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.track(t)
        return out


def peak_activation_bytes(model: nn.Module, input_shape: Sequence[int], batch: int = 1) -> int:
    """Largest total size of activation tensors alive at once during one inference forward pass.

    The input counts (the caller holds it throughout); parameters and buffers do not.
    Runs in eval mode without autograd (nothing is saved for backward) on the model's
    device and dtype, and restores the model's train/eval flags afterwards.
    """
    x = probe_input(model, input_shape, batch)
    ignore = {found[0] for t in (*model.parameters(), *model.buffers()) if (found := _storage_key(t)) is not None}
    tracker = LiveStorageTracker(ignore)
    tracker.track(x)
    try:
        with eval_mode(model), torch.no_grad(), tracker:
            out = model(x)
        del out
        return tracker.peak_bytes
    finally:
        tracker.detach_all()
