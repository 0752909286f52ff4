"""Quantization-aware fine-tuning with PyTorch's eager-mode QAT tools, for onnxruntime's INT8 scheme.

`torch.ao.quantization.prepare_qat` swaps convs and linears for versions whose weights
pass through fake quantization, and observes activations at module outputs (Jacob et al.,
CVPR 2018). The fake quantizers mirror what `edgenas.export.quantize` deploys: weights
int8, symmetric, one scale per output channel (which commutes with the BatchNorm that
onnxruntime folds into the conv before quantizing, so the grids match), activations
uint8 affine per tensor. After a few epochs at a small learning rate the network's float
weights, which have learnt to sit well on that grid, are copied back into a plain network
and quantized again by onnxruntime with the same calibration.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from edgenas.core.seeding import derive_seed

QAT_LR = 0.005  # peak learning rate of the fine-tuning (the models are trained at 0.1)


def qat_qconfig() -> Any:
    """Fake quantizers matching onnxruntime's static QDQ scheme (see the module docstring)."""
    from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver, QConfig
    from torch.ao.quantization.fake_quantize import default_per_channel_weight_fake_quant

    activation = FakeQuantize.with_args(
        observer=MovingAverageMinMaxObserver,
        quant_min=0,
        quant_max=255,
        dtype=torch.quint8,
        qscheme=torch.per_tensor_affine,
    )
    return QConfig(activation=activation, weight=default_per_channel_weight_fake_quant)


def qat_finetune(
    model: nn.Module, data: Any, *, epochs: int, seed: int = 0, lr: float = QAT_LR, quiet: bool = True
) -> tuple[nn.Module, dict[str, Any]]:
    """A copy of `model` fine-tuned for `epochs` under fake quantization; returns (float model, record).

    The record names the protocol (`epochs`, `lr`, schedule, seed, fake-quantized module count).
    """
    from torch.ao.quantization import prepare_qat

    from edgenas.train.trainer import TrainConfig, Trainer

    qmodel = copy.deepcopy(model).cpu().train()
    qmodel.qconfig = qat_qconfig()
    prepare_qat(qmodel, inplace=True)
    fake = sum(1 for m in qmodel.modules() if hasattr(m, "weight_fake_quant"))
    cfg = TrainConfig(epochs=epochs, lr=lr, schedule="cosine", seed=derive_seed(seed, "qat"))
    Trainer(qmodel, data, cfg, torch.device("cpu"), quiet=quiet, channels_last=False).train_epochs()
    plain = copy.deepcopy(model).cpu().eval()
    own = plain.state_dict()
    tuned = {k: v for k, v in qmodel.state_dict().items() if k in own and v.shape == own[k].shape}
    missing = sorted(set(own) - set(tuned))
    if missing:
        raise RuntimeError(f"QAT lost track of {len(missing)} tensors, e.g. {missing[0]}")
    plain.load_state_dict(tuned)
    record = {"epochs": epochs, "lr": lr, "schedule": "cosine", "seed": seed, "fake_quantized_layers": fake}
    return plain.eval(), record
