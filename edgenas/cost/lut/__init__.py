"""Per-op latency lookup tables (LUTs), made on the device itself with onnxruntime.

`edgenas profile-device` times every kernel a space's networks run, at every shape they
run it at, and records which ops onnxruntime fuses on that machine; a network's latency
is then the sum of its kernels' entries (`LatencyTable.predict_ms`, microseconds instead
of seconds for exporting and timing it), and `check_table` measures how well the sums
rank and predict whole networks (MAPE, Kendall tau). A device profile points at a table
made on the real target with `latency: {source: table, table: FILE}`.

- `table`: `LatencyTable` (file, schema, coverage, predictions), `latency_table_for`.
- `timing`: sessions, interleaved block timing, small ONNX graphs, optimised graphs, and
  `quantize_graphs` / `quantize_network` for INT8 tables (`precision`, `--precision int8`).
- `check`: `check_table`, `check_plot`, `summary_rows`.
- `runner`: the timing loop and session settings, numpy + onnxruntime only (the kit's `runner.py`).
- `kit`: `write_kit`, `import_timings`, `check_kit`: a table made on a device without edgenas.
- the space's kernels: `edgenas/spaces/<space>/latency.py` (NB201: `profile_nb201`,
  `stage_kernels`, keys, importable from here as before; DARTS: `profile_darts`,
  `cell_kernels`, keys per op, width, side and stride).
History and design notes: docs/methods/lut.md.
"""

from __future__ import annotations

import importlib
from typing import Any

from edgenas.cost.lut.check import CHECK_SCHEMA_VERSION, check_plot, check_table, summary_rows
from edgenas.cost.lut.table import (
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    TABLE_KIND,
    LatencyKernels,
    LatencyTable,
    latency_kernels,
    latency_spaces,
    latency_table_for,
)
from edgenas.cost.lut.timing import BLOCK, CHAIN_EXTRA, DEFAULT_REPEATS, DEFAULT_WARMUP, OPSET, identity_model

# NB201 names that lived in the former `edgenas/cost/lut.py`, loaded from the space's
# kernels on first use (the kernels import this package, so not at import time)
_NB201_NAMES = (
    "CELL_KERNELS",
    "CHAINS",
    "FUSED_CHAINS",
    "SUMMARY_COLUMNS",
    "StageFusion",
    "cell_key",
    "chain_model",
    "fusion_keys",
    "fusion_record",
    "frame_keys",
    "measure_fusion",
    "profile_nb201",
    "required_keys",
    "stage_kernels",
    "stage_shapes",
)

__all__ = [
    "BLOCK",
    "CHAIN_EXTRA",
    "CHECK_SCHEMA_VERSION",
    "DEFAULT_REPEATS",
    "DEFAULT_WARMUP",
    "OPSET",
    "READABLE_VERSIONS",
    "SCHEMA_VERSION",
    "SPACES",
    "TABLE_KIND",
    "LatencyKernels",
    "LatencyTable",
    "check_plot",
    "check_table",
    "identity_model",
    "latency_kernels",
    "latency_spaces",
    "latency_table_for",
    "summary_rows",
    *_NB201_NAMES,
]


def __getattr__(name: str) -> Any:
    """`SPACES` (the registered spaces with LUT kernels, from `edgenas.spaces.SPACES`) and the NB201 names."""
    if name == "SPACES":
        return latency_spaces()
    if name in _NB201_NAMES:
        return getattr(importlib.import_module("edgenas.spaces.nb201.latency"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
