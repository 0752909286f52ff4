"""Helpers every cost measurement shares: where a model lives, a probe input, eval mode.

Costs are properties of inference, so each measurement runs the model in eval mode on a
probe input of the model's own device and dtype, and then puts the model back exactly as
it found it (a model being trained must not silently switch to eval).
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from edgenas.core.errors import ConfigError
from edgenas.core.seeding import torch_generator


def check_input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    """`input_shape` as a tuple of positive ints (one sample, no batch), or a `ConfigError`."""
    try:
        shape = tuple(operator.index(d) for d in input_shape)  # ints only: 32.0 or "32" is a caller bug
    except TypeError:
        raise ConfigError(f"input shape must be a tuple of ints like (3, 32, 32), got {input_shape!r}") from None
    if not shape or min(shape) < 1:
        raise ConfigError(f"input shape must be positive ints like (3, 32, 32), got {input_shape!r}")
    return shape


def check_batch(batch: int) -> int:
    """A positive batch size, or a `ConfigError`."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch must be a positive int, got {batch!r}")
    return batch


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a stateless model)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """Floating dtype of the model's first floating parameter (the default dtype otherwise)."""
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()


def probe_input(
    model: nn.Module,
    input_shape: Sequence[int],
    batch: int = 1,
    *,
    device: torch.device | str | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """A seeded random batch on the model's device and in its dtype.

    Values do not change FLOPs or memory, but a fixed seed keeps data-dependent models
    (and any NaN surprises) reproducible.
    """
    shape = (check_batch(batch), *check_input_shape(input_shape))
    x = torch.randn(shape, generator=torch_generator(seed, "probe_input"))
    return x.to(device=device if device is not None else model_device(model), dtype=model_dtype(model))


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` in eval mode, then restore every submodule's own train/eval flag.

    Restoring per submodule (not `model.train(was_training)`) keeps mixed setups intact,
    e.g. a network in training with frozen BatchNorm layers held in eval.
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in flags:
            m.training = training
