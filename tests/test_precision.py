"""GPU speed-ups: AMP only on CUDA (bf16, else fp16 with a scaler), switchable; CPU training unchanged, bit for bit."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from edgenas.core import precision as prec
from edgenas.core.precision import AMP_ENV, resolve_precision, switches
from edgenas.data import load_dataset
from edgenas.data.base import BatchLoader
from edgenas.train.trainer import TrainConfig, Trainer, cross_entropy_loss, make_optimizer, make_scheduler

CUDA = torch.device("cuda")  # a device object only: nothing runs on it here


def test_amp_is_never_used_on_cpu() -> None:
    for amp in (None, True, False):
        p = resolve_precision(torch.device("cpu"), amp=amp)
        assert p.amp_dtype is None and p.scaler() is None and not p.scaled
    assert isinstance(prec.Precision(torch.device("cpu"), None, True).autocast(), type(prec.contextlib.nullcontext()))


def test_cuda_takes_bf16_where_supported_else_fp16_with_a_scaler(monkeypatch) -> None:
    monkeypatch.setattr(prec, "bf16_supported", lambda device: True)
    p = resolve_precision(CUDA)
    assert p.amp_dtype == torch.bfloat16 and not p.scaled and p.channels_last
    assert p.describe() == "bf16 channels_last"
    monkeypatch.setattr(prec, "bf16_supported", lambda device: False)
    p = resolve_precision(CUDA)
    assert p.amp_dtype == torch.float16 and p.scaled
    assert resolve_precision(CUDA, fp16=False).amp_dtype is None  # loops without a scaler stay fp32
    assert resolve_precision(CUDA, amp=False).amp_dtype is None
    assert not resolve_precision(CUDA, channels_last=False).channels_last


def test_switches_reach_the_environment_and_are_restored(monkeypatch) -> None:
    monkeypatch.setattr(prec, "bf16_supported", lambda device: True)
    monkeypatch.delenv(AMP_ENV, raising=False)
    with switches(amp=False, channels_last=False):
        assert os.environ[AMP_ENV] == "0"
        p = resolve_precision(CUDA)
        assert p.amp_dtype is None and not p.channels_last
        assert prec.switch_env() == {AMP_ENV: "0", prec.CHANNELS_LAST_ENV: "0"}  # what Ray workers get
    assert AMP_ENV not in os.environ and resolve_precision(CUDA).amp_dtype == torch.bfloat16


def test_cpu_training_is_the_plain_fp32_loop_bit_for_bit() -> None:
    """The trainer's step (now through the precision helpers) equals the loop it replaced."""
    data = load_dataset("digits", seed=0, subset=300)
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.05, seed=0)

    def net() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 10))

    trainer = Trainer(net(), data, cfg, torch.device("cpu"), quiet=True)
    assert trainer.precision.amp_dtype is None and trainer.scaler is None and trainer.channels_last
    trainer.train_epochs()

    ref = net().to(memory_format=torch.channels_last)
    opt = make_optimizer(ref, cfg)
    batches = BatchLoader(data.train, cfg.batch_size, shuffle=True, seed=cfg.seed, drop_last=True)
    sched = make_scheduler(opt, cfg, len(batches))
    loss_fn = cross_entropy_loss(0.0)
    batches.set_epoch(0)
    for x, y in batches:
        loss = loss_fn(ref, x.contiguous(memory_format=torch.channels_last), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(ref.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
    for a, b in zip(trainer.model.state_dict().values(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_searches_on_cpu_run_fp32_channels_last_unless_switched_off(monkeypatch) -> None:
    from edgenas.search.bilevel import BilevelSearch

    class Probe:
        device = torch.device("cpu")
        net = nn.Conv2d(1, 1, 1)
        step_precision = BilevelSearch.step_precision
        _precision = None
        _resumed_channels_last = None

    p = Probe().step_precision()
    assert p.amp_dtype is None and p.channels_last
    monkeypatch.setenv("EDGENAS_CHANNELS_LAST", "0")
    assert not Probe().step_precision().channels_last


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none in CI)")
def test_amp_training_step_on_cuda() -> None:
    data = load_dataset("digits", seed=0, subset=300)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 10))
    trainer = Trainer(model, data, TrainConfig(epochs=1, batch_size=32), CUDA, quiet=True)
    assert trainer.precision.amp_dtype in (torch.bfloat16, torch.float16)
    trainer.train_epochs()
    assert trainer.history[0]["train_loss"] < 2.3
