"""Choosing where tensors live: `--device auto|cpu|cuda` (never assume CUDA)."""

from __future__ import annotations

import torch

from edgenas.core.errors import UserError

COMPUTE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """Map a user's `--device` choice to a torch device.

    `auto` takes CUDA when present, else CPU; asking for `cuda` where there is none is a
    user error rather than a silent fallback, so timings are never reported for the
    wrong hardware.
    """
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA device is available here; use --device cpu or auto")
        return torch.device(name)
    raise UserError(f"--device {name!r}: choose one of {', '.join(COMPUTE_CHOICES)}")
