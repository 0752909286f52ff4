"""Training throughput with and without AMP / channels_last (issue 20), for a GPU machine.

Usage:  .venv/bin/python benchmarks/gpu_amp.py [--device cuda] [--epochs 1] [--width 16] [--resolution 64]
Trains one NB201 network with `Trainer` (the path of `edgenas train`) on Fashion-MNIST for
each setting (fp32 NCHW, fp32 channels_last, AMP NCHW, AMP channels_last; AMP is bf16 where
the GPU has it, else fp16 with a scaler) and records the epoch's images/s and test accuracy.
Writes benchmarks/results/gpu_amp.json. On a CPU every setting is fp32 (AMP is CUDA-only):
`--device cpu` only checks that the script runs.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from edgenas.core.compute import resolve_device
from edgenas.core.precision import resolve_precision
from edgenas.core.space import NetShape
from edgenas.data import load_dataset
from edgenas.spaces import get_space
from edgenas.train.trainer import TrainConfig, Trainer

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
OUT = Path(__file__).parent / "results" / "gpu_amp.json"
SETTINGS = {"fp32": (False, False), "fp32-cl": (False, True), "amp": (True, False), "amp-cl": (True, True)}


def measure(data, device: torch.device, amp: bool, channels_last: bool, args) -> dict:
    space = get_space("nb201")
    torch.manual_seed(0)
    model = space.build(space.parse(ARCH), NetShape.for_data(data.info, args.width, args.cells))
    precision = resolve_precision(device, amp=amp, channels_last=channels_last)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, seed=0)
    trainer = Trainer(model, data, cfg, device, quiet=True, precision=precision)
    result = trainer.fit()
    return {
        "precision": precision.describe(),
        "images_per_s": [h["images_per_s"] for h in result["history"]],
        "test_accuracy": result["test_accuracy"],
        "train_seconds": result["train_seconds"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--cells", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--subset", type=int, help="training images (default: all 60,000)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    device = resolve_device(args.device)
    data = load_dataset("fashion-mnist", seed=0, subset=args.subset, resize=args.resolution)
    runs = {name: measure(data, device, amp, cl, args) for name, (amp, cl) in SETTINGS.items()}
    report = {
        "schema_version": 1,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "arch": ARCH,
        "width": args.width,
        "resolution": args.resolution,
        "batch": args.batch,
        "epochs": args.epochs,
        "train_images": len(data.train),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
