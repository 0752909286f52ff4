"""How a training loop computes on its device: mixed precision and memory format.

Why: on a GPU, automatic mixed precision (Micikevicius et al., "Mixed Precision
Training", ICLR 2018) and channels_last convolutions run the same training at a
fraction of the time and memory. bf16 keeps fp32's exponent range, so it needs no loss
scaling; fp16 (GPUs without bf16) needs a `GradScaler`. On the CPU nothing changes:
AMP is never used there (CPU results stay bit-exact) and channels_last stays on, as the
trainer always had it (~1.4x on CPU convolutions).

Switches: `amp` and `channels_last` arguments, or the environment variables
`EDGENAS_AMP=0` / `EDGENAS_CHANNELS_LAST=0` (what `--no-amp` / `--no-channels-last` set,
so they reach every stage and every executor's workers).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

AMP_ENV = "EDGENAS_AMP"
CHANNELS_LAST_ENV = "EDGENAS_CHANNELS_LAST"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "1").strip().lower() not in ("0", "false", "no", "off")


def bf16_supported(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


@dataclass(frozen=True)
class Precision:
    """What a loop on `device` does: autocast dtype (None: fp32), loss scaling, memory format."""

    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool

    @property
    def scaled(self) -> bool:
        """fp16 needs its loss scaled so small gradients do not underflow (bf16 does not)."""
        return self.amp_dtype == torch.float16

    def describe(self) -> str:
        amp = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]
        return f"{amp}{' channels_last' if self.channels_last else ''}"

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def model(self, model: nn.Module) -> nn.Module:
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def scaler(self) -> torch.amp.GradScaler | None:
        return torch.amp.GradScaler(self.device.type) if self.scaled else None


def resolve_precision(
    device: torch.device, amp: bool | None = None, channels_last: bool | None = None, fp16: bool = True
) -> Precision:
    """The precision for `device`: AMP only on CUDA (bf16 where supported, else fp16 when `fp16`).

    `amp` / `channels_last` None read the environment switches (default on). A loop that
    cannot scale its loss (the searches' α steps take `autograd.grad` directly) passes
    `fp16=False` and runs fp32 on GPUs without bf16.
    """
    amp = _env_flag(AMP_ENV) if amp is None else amp
    channels_last = _env_flag(CHANNELS_LAST_ENV) if channels_last is None else channels_last
    dtype = None
    if amp and device.type == "cuda":
        if bf16_supported(device):
            dtype = torch.bfloat16
        elif fp16:
            dtype = torch.float16
    return Precision(device, dtype, channels_last)


@contextlib.contextmanager
def switches(amp: bool | None = None, channels_last: bool | None = None) -> Iterator[None]:
    """Set the environment switches for this process and the workers it starts (None: leave
    as is), restoring them on exit (the CLI may run several commands in one process)."""
    wanted = {AMP_ENV: amp, CHANNELS_LAST_ENV: channels_last}
    before = {k: os.environ.get(k) for k in wanted}
    for k, v in wanted.items():
        if v is not None:
            os.environ[k] = "1" if v else "0"
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def switch_env() -> dict[str, str]:
    """The switches set in this process, to forward to remote workers (Ray's runtime_env)."""
    return {k: os.environ[k] for k in (AMP_ENV, CHANNELS_LAST_ENV) if k in os.environ}


def clip_and_step(
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    loss: torch.Tensor,
    params: Iterable[torch.Tensor] | None,
    clip: float | None,
    after_backward=None,
) -> None:
    """backward → (hook) → unscale → clip → step, through the scaler when there is one."""
    if scaler is None:
        loss.backward()
        if after_backward is not None:
            after_backward()
        if clip and params is not None:
            nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        return
    scaler.scale(loss).backward()
    scaler.unscale_(opt)  # hooks and clipping see true gradients
    if after_backward is not None:
        after_backward()
    if clip and params is not None:
        nn.utils.clip_grad_norm_(params, clip)
    scaler.step(opt)
    scaler.update()
