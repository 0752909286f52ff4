"""Jobs the executor tests send to worker processes (importable by module path there)."""

from __future__ import annotations

import os

import torch

from edgenas.core.errors import ConfigError


def tiny_training(seed: int, steps: int = 5) -> dict:
    """A few SGD steps of a small conv net on seeded random data: its loss and weights' checksum."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 64, 10)
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    return {
        "loss": float(loss.detach()),
        "checksum": float(sum(p.detach().double().sum() for p in net.parameters())),
        "threads": torch.get_num_threads(),
        "pid": os.getpid(),
    }


def bad_input(value: int) -> None:
    """A job failing with a user error (which must reach the caller as that error)."""
    raise ConfigError(f"value {value} is not allowed")


def worker_report() -> dict:
    """Where a job ran: its niceness and, under Ray, the GPUs Ray gave it."""
    out: dict = {"nice": os.nice(0), "pid": os.getpid(), "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES")}
    try:
        import ray

        if ray.is_initialized():
            ctx = ray.get_runtime_context()
            out["gpu_ids"] = [str(g) for g in ray.get_gpu_ids()]
            out["assigned"] = ctx.get_assigned_resources()
    except ImportError:
        pass
    return out
