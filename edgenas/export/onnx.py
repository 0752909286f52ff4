"""ONNX files: export a network, open it in onnxruntime, and check it against PyTorch.

Export uses the dynamo exporter (`torch.export` + onnxscript) and by default asks for a
dynamic batch dimension, so one file serves the batch-1 latency runs and the batch-2 output
check (`dynamic_batch=False` trades that for a faster export, for timing-only files). Code
that ties the batch size (e.g. `x.view(1, -1)`) cannot have one: torch.export then either
specialises the batch silently or refuses, and the model is exported with a static batch.
When the dynamo exporter fails altogether, the TorchScript exporter is tried, static batch.
A static batch or a fallback exporter is logged as a warning and recorded in the file's
metadata (`edgenas.exporter`, `edgenas.dynamic_batch`, read back from the graph itself); the
exporter's per-node debug records (stack traces, FX node text) are dropped.
Files that are only timed (`edgenas.cost.measure_cost`) may ask for the TorchScript exporter
first (`prefer="torchscript"`): it exports in about a tenth of a second where the dynamo
exporter takes seconds, and after onnxruntime's optimisations its graph of an NB201 or DARTS
network has the same nodes but one (global pooling as GlobalAveragePool, not ReduceMean).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from edgenas.core.errors import UserError
from edgenas.core.seeding import torch_generator
from edgenas.cost._runtime import check_batch, check_input_shape, model_dtype

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
# Upper bound of the exported batch dimension; torch.export needs one to reason about shapes.
MAX_BATCH = 4096
# onnxruntime's names of ONNX input types, for building inputs of the right dtype.
_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}
_TORCH_DTYPES = {np.float32: torch.float32, np.float16: torch.float16, np.float64: torch.float64}
# Largest PyTorch/onnxruntime output difference accepted for float32 (kernel and fusion rounding).
DEFAULT_ATOL = 1e-4
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class ExportError(UserError):
    """A network cannot be exported to ONNX, or its ONNX file does not match PyTorch."""


def export_onnx(
    model: nn.Module,
    input_shape: Sequence[int],
    path: str | Path,
    *,
    batch: int = 1,
    opset: int = 18,
    dynamic_batch: bool = True,
    prefer: str = "dynamo",
    compact: bool = False,
) -> Path:
    """Write `model` as an ONNX file at `path` (input "input", output "logits"); returns `path`.

    `dynamic_batch=False` exports a graph fixed at `batch`: about a third faster to export
    (torch.export need not reason about a symbolic size), enough when the file is only
    timed at that batch, as `edgenas.cost.measure_cost` does. `prefer="torchscript"` (static
    batch only) tries the TorchScript exporter first, for timing files: its graph is checked
    against PyTorch on new data, and the dynamo exporter is used when it fails or differs.
    `compact=True` writes the deployment-compact file (`edgenas.export.compact`): short names,
    no shape annotations, the same outputs bit for bit.

    The model itself is untouched: a CPU deep copy in eval mode is exported. The file is
    written to a temp file beside `path` and renamed into place, so `path` never holds a
    half-written model, and a failed export leaves any previous file as it was. Raises
    `ExportError` with a one-line reason when no exporter produces a faithful model.
    """
    path = Path(path)
    if prefer not in ("dynamo", "torchscript") or (prefer == "torchscript" and dynamic_batch):
        raise ValueError(f"prefer must be 'dynamo' or, with dynamic_batch=False, 'torchscript'; got {prefer!r}")
    shape = (check_batch(batch), *check_input_shape(input_shape))
    name = type(model).__name__
    try:
        cpu_model = copy.deepcopy(model).cpu().eval()
    except Exception as e:
        raise ExportError(f"ONNX export to {path} failed: cannot copy {name}: {_one_line(e)}") from e
    example = torch.randn(shape, generator=torch_generator(0, "export_onnx")).to(model_dtype(cpu_model))
    try:  # a model that does not run eagerly cannot export; say so before the exporters' noise
        with torch.inference_mode():
            cpu_model(example)
    except Exception as e:
        raise ExportError(f"ONNX export to {path} failed: {name} cannot run on a {shape} input: {_one_line(e)}") from e

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if prefer == "torchscript" and _torchscript_first(cpu_model, example, tmp, opset):
            exporter = "torchscript"
        else:
            exporter = _export_with_fallbacks(cpu_model, example, tmp, path, opset, dynamic_batch)
            if exporter == "torchscript":
                _check_traced(cpu_model, tmp, path, shape)
        _finish_file(tmp, exporter, path, warn_static=dynamic_batch, compact=compact)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _check_traced(cpu_model: nn.Module, file: Path, path: Path, shape: tuple[int, ...]) -> None:
    """Tracing records one run: data-dependent code may be baked in as constants. Check on other data."""
    name = type(cpu_model).__name__
    session = onnx_session(file)
    if not session.get_inputs():
        raise ExportError(
            f"ONNX export to {path} failed: the TorchScript exporter's graph of {name} ignores its "
            "input (data-dependent code traced as constants?)"
        )
    try:
        diff = _max_abs_diff(cpu_model, session, shape[1:], batch=shape[0], seed=1)
    except ExportError as e:
        raise ExportError(f"ONNX export to {path} failed: TorchScript exporter: {e}") from e
    if not diff <= DEFAULT_ATOL:
        raise ExportError(
            f"ONNX export to {path} failed: the TorchScript exporter's graph of {name} "
            f"differs from PyTorch by {diff:.3g} on new data (data-dependent code?)"
        )


def _torchscript_first(model: nn.Module, example: torch.Tensor, tmp: Path, opset: int) -> bool:
    """Export a static-batch timing file with the TorchScript exporter; False (nothing said) when it
    fails or its graph does not match PyTorch, so that the dynamo exporter takes over."""
    common: dict[str, Any] = {"opset_version": opset, "input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME]}
    try:
        _quiet_export(model, example, tmp, dynamo=False, **common)
        _check_traced(model, tmp, tmp, tuple(example.shape))
    except Exception as e:  # any failure: the dynamo exporter is the reference path
        log.debug("TorchScript export of %s not used: %s", type(model).__name__, _one_line(e))
        return False
    return True


def verify_onnx(
    model: nn.Module,
    onnx_path: str | Path,
    input_shape: Sequence[int],
    *,
    batch: int = 2,
    seed: int = 0,
    atol: float = DEFAULT_ATOL,
) -> float:
    """Max absolute difference between PyTorch and onnxruntime outputs on one seeded random batch.

    Batch 2 by default, so a wrongly baked-in batch dimension shows up; a file exported
    with a static batch (see the module docstring) is checked at its own batch instead.
    The model runs as a CPU deep copy in eval mode. Raises `ExportError` (with the
    difference and `atol`) when outputs differ by more than `atol`, differ in shape, or
    are NaN/inf where PyTorch's are not.
    """
    session = onnx_session(onnx_path)
    cpu_model = copy.deepcopy(model).cpu().eval()
    try:
        diff = _max_abs_diff(cpu_model, session, input_shape, batch=batch, seed=seed)
    except ExportError as e:
        raise ExportError(f"{onnx_path}: {e}") from e
    if not diff <= atol:
        raise ExportError(f"{onnx_path}: ONNX and PyTorch outputs differ by {diff:.3g} (atol {atol:g}); re-export it")
    return diff


def _max_abs_diff(cpu_model: nn.Module, session: Any, input_shape: Sequence[int], *, batch: int, seed: int) -> float:
    """Largest |PyTorch - onnxruntime| over all outputs for one seeded random batch (inf if non-finite)."""
    name, static_batch, dtype = input_spec(session)
    batch = static_batch or check_batch(batch)
    x = torch.randn((batch, *check_input_shape(input_shape)), generator=torch_generator(seed, "verify_onnx"))
    with torch.inference_mode():
        out = cpu_model(x.to(_TORCH_DTYPES[dtype]))
    expected = [t.float().numpy() for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
    try:
        got = session.run(None, {name: x.numpy().astype(dtype)})
    except Exception as e:
        raise ExportError(f"onnxruntime cannot run the ONNX model on a {tuple(x.shape)} input: {_one_line(e)}") from e
    if len(got) != len(expected):
        raise ExportError(f"the ONNX model has {len(got)} outputs, PyTorch gives {len(expected)}")
    diff = 0.0
    for ref, onnx_out in zip(expected, got, strict=True):
        if ref.shape != onnx_out.shape:
            raise ExportError(f"ONNX output shape {onnx_out.shape} differs from PyTorch's {ref.shape}")
        a, b = ref.astype(np.float64), onnx_out.astype(np.float64)
        d = np.where(np.isnan(a) & np.isnan(b), 0.0, np.abs(a - b))  # NaN in both is agreement
        diff = max(diff, float(np.nan_to_num(d, nan=np.inf).max(initial=0.0)))
    return diff


def onnx_session(onnx_path: str | Path, *, threads: int = 1) -> Any:
    """An onnxruntime CPU session set up for reproducible timing.

    One intra-op pool of `threads`, no inter-op parallelism and sequential execution, so
    timings reflect a device that runs one model on a fixed number of cores; full graph
    optimisation, as a deployed runtime would use.
    """
    import onnxruntime as ort

    path = Path(onnx_path)
    if not path.is_file():
        raise ExportError(f"no such ONNX file: {path}")
    from edgenas.cost.lut.runner import session_options

    opts = session_options(threads)  # the settings the profiling kit's runner uses on the device
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ExportError(f"onnxruntime cannot load {path}: {_one_line(e)}") from e


def input_spec(session: Any) -> tuple[str, int | None, type]:
    """(name, static batch size or None if dynamic, numpy dtype) of the session's single input."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ExportError(f"expected an ONNX model with one input, found {len(inputs)}")
    spec = inputs[0]
    if spec.type not in _ORT_DTYPES:
        raise ExportError(f"ONNX input {spec.name!r} has type {spec.type}; expected a float tensor")
    batch = spec.shape[0] if spec.shape and isinstance(spec.shape[0], int) else None
    return spec.name, batch, _ORT_DTYPES[spec.type]


def _export_with_fallbacks(
    model: nn.Module, example: torch.Tensor, tmp: Path, path: Path, opset: int, dynamic_batch: bool
) -> str:
    """Export to `tmp` by the first path that works; returns the exporter's name."""
    common: dict[str, Any] = {"opset_version": opset, "input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME]}
    batch_dim = {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}
    try:
        extra = {"dynamic_shapes": (batch_dim,)} if dynamic_batch else {}
        _quiet_export(model, example, tmp, dynamo=True, **extra, **common)
        return "dynamo"
    except Exception as e:
        dynamo_error = e
    if dynamic_batch and _is_shape_constraint_error(dynamo_error):
        try:
            _quiet_export(model, example, tmp, dynamo=True, **common)
            return "dynamo"
        except Exception as e:
            dynamo_error = e
    try:
        _quiet_export(model, example, tmp, dynamo=False, **common)
    except Exception as e:
        raise ExportError(
            f"ONNX export to {path} failed: dynamo exporter: {_one_line(dynamo_error)}; "
            f"TorchScript exporter: {_one_line(e)}"
        ) from e
    log.warning(
        "dynamo ONNX exporter failed on %s (%s); exported with the TorchScript exporter instead",
        type(model).__name__,
        _one_line(dynamo_error),
    )
    return "torchscript"


def _quiet_export(model: nn.Module, example: torch.Tensor, f: Path, *, dynamo: bool, **kwargs: Any) -> None:
    """`torch.onnx.export` without its progress prints, log lines and warnings."""
    extra: dict[str, Any] = {"external_data": False} if dynamo else {}
    with _quiet_torch(fd_level=not dynamo), torch.no_grad():
        torch.onnx.export(model, (example,), str(f), dynamo=dynamo, verbose=False, **extra, **kwargs)


@contextlib.contextmanager
def _quiet_torch(*, fd_level: bool) -> Iterator[None]:
    """Silence torch's exporters for the duration: stdout/stderr, warnings, torch.* loggers.

    The TorchScript exporter also dumps its graph from C++ straight to the process's
    stdout when it fails; `fd_level` redirects file descriptors 1 and 2 too (briefly
    hiding other threads' output, which is why it is only used for that exporter).
    """
    loggers = [logging.getLogger("torch")] + [
        lg
        for name, lg in logging.root.manager.loggerDict.items()
        if name.startswith("torch") and isinstance(lg, logging.Logger) and lg.level != logging.NOTSET
    ]
    levels = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")
            if fd_level:
                stack.enter_context(_redirect_fd(1))
                stack.enter_context(_redirect_fd(2))
            yield
    finally:
        for lg, level in levels:
            lg.setLevel(level)


@contextlib.contextmanager
def _redirect_fd(fd: int) -> Iterator[None]:
    """Point a file descriptor at a scratch file (catches C++ output Python cannot see)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as scratch:
        os.dup2(scratch.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)


def _finish_file(path: Path, exporter: str, target: Path, *, warn_static: bool, compact: bool = False) -> None:
    """Check the ONNX file at `path` (bound for `target`), record how it was made, flush it to disk."""
    import onnx

    from edgenas.export.compact import compact_model

    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
    except Exception as e:
        raise ExportError(f"ONNX export to {target} failed: the exporter wrote an invalid model: {_one_line(e)}") from e
    _strip_debug_records(proto.graph)
    if compact:
        onnx.checker.check_model(compact_model(proto))
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    dynamic = batch_dim.HasField("dim_param")
    if warn_static and not dynamic:
        log.warning("%s has a static batch of %d: the model's code ties the batch size", target, batch_dim.dim_value)
    for key, value in {"edgenas.exporter": exporter, "edgenas.dynamic_batch": str(dynamic).lower()}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    with open(path, "wb") as fh:
        fh.write(proto.SerializeToString())
        fh.flush()
        os.fsync(fh.fileno())


def _strip_debug_records(graph: Any) -> None:
    """Drop the exporter's per-node debug records (FX node text, stack traces naming local source
    paths): nothing reads them, and in a small network they are a large share of the file, so
    model sizes on disk would measure the exporter's notes rather than the model."""
    for node in graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
        for attr in node.attribute:
            if attr.g is not None and attr.HasField("g"):
                _strip_debug_records(attr.g)
            for sub in attr.graphs:
                _strip_debug_records(sub)


def _is_shape_constraint_error(e: BaseException) -> bool:
    """True when torch.export failed only because the batch dimension cannot be dynamic."""
    from torch.fx.experimental.symbolic_shapes import ConstraintViolationError

    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, ConstraintViolationError) or "Constraints violated" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _one_line(e: BaseException) -> str:
    """The most specific message in an exception chain, on one line (exporters nest theirs)."""
    innermost = e
    while innermost.__cause__ is not None:
        innermost = innermost.__cause__
    text = _ANSI.sub("", str(innermost)).strip() or type(innermost).__name__
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), text)
    return line if len(line) <= 300 else line[:297] + "..."
