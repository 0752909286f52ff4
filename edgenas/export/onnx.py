"""ONNX export with an output check against PyTorch.

The exported graph is what runs on a device, so it is verified: the same inputs through
PyTorch and onnxruntime must agree within a tolerance, or the export is refused.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgenas.core.errors import UserError

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class ExportError(UserError):
    """The model could not be exported, or its ONNX outputs disagree with PyTorch."""


def export_onnx(
    model: nn.Module, input_shape: tuple[int, int, int], path: str | Path, *, batch: int = 1, opset: int = 18
) -> Path:
    """Export a CPU copy of `model` (eval mode) to `path` atomically, weights inside the file.

    Uses the torch.export-based exporter (the TorchScript one is deprecated); its progress
    chatter and warnings about optional packages are silenced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).cpu().eval()
    x = torch.randn(batch, *input_shape)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.onnx", dir=path.parent)
    os.close(fd)
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (x,),
                tmp,
                dynamo=True,
                external_data=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                verbose=False,
            )
        os.replace(tmp, path)
    except Exception as exc:
        raise ExportError(f"ONNX export to {path} failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    finally:
        onnx_logger.setLevel(level)
        Path(tmp).unlink(missing_ok=True)
    return path


def onnx_session(path: str | Path, threads: int = 1):
    """An onnxruntime CPU session with a fixed thread count (sequential, full optimisation)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"{path}: onnxruntime cannot load it: {str(exc).splitlines()[0]}") from None


def verify_onnx(
    model: nn.Module,
    path: str | Path,
    input_shape: tuple[int, int, int],
    *,
    batch: int = 1,
    trials: int = 3,
    seed: int = 0,
    atol: float = 1e-4,
) -> float:
    """Max abs difference between PyTorch and onnxruntime outputs over `trials` random inputs.

    Raises `ExportError` above `atol`. Inputs are drawn at the exported (static) batch size.
    """
    session = onnx_session(path)
    model = copy.deepcopy(model).cpu().eval()
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    for _ in range(trials):
        x = torch.randn(batch, *input_shape, generator=g)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        if got.shape != expected.shape:
            raise ExportError(f"{path}: ONNX output shape {got.shape} differs from PyTorch {expected.shape}")
        worst = max(worst, float(np.max(np.abs(got - expected))))
    if not worst <= atol:
        raise ExportError(f"{path}: ONNX and PyTorch outputs differ by {worst:.3g} (tolerance {atol:g})")
    return worst
