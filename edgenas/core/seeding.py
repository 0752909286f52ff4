"""All randomness in edgenas flows from one seed through these helpers.

Why a module for this: the same seed must give the same ranking, the same data split and
the same training run (on the same hardware), so every random draw takes an explicit
`numpy.random.Generator` or `torch.Generator` derived from the run's seed instead of the
global RNGs, and `seed_everything` pins the global ones for third-party code.
"""

from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import torch


def derive_seed(seed: int, *names: object) -> int:
    """A child seed for a named purpose, stable across processes and Python versions.

    `hash()` is salted per process, so a digest is used instead; this lets independent
    parts of a run (split, init, shuffling of epoch 3) draw without sharing one stream.
    """
    key = ":".join([str(seed), *map(str, names)]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") % (2**63 - 1)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch global RNGs (for code that does not take a generator)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def numpy_rng(seed: int, *names: object) -> np.random.Generator:
    """A NumPy generator for one named purpose of a run."""
    return np.random.default_rng(derive_seed(seed, *names))


def torch_generator(seed: int, *names: object) -> torch.Generator:
    """A CPU torch generator for one named purpose of a run."""
    g = torch.Generator()
    g.manual_seed(derive_seed(seed, *names))
    return g
