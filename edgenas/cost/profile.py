"""`edgenas profile-device` as functions: a per-op latency table of this machine, or a check of one.

What the command adds around `edgenas.cost.lut` (whose public names only are used here):
where files go (`NAME.lut.json`; `TABLE.check.json` and its plot) and the shape a check
measures at (the table's input, the width and cells asked for).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgenas.core.atomic import atomic_write_json
from edgenas.core.errors import ConfigError
from edgenas.core.space import NetShape
from edgenas.cost import lut


def profile_device(
    name: str,
    resolution: int,
    *,
    space: str = "nb201",
    in_channels: int = 1,
    classes: int = 10,
    widths: Sequence[int] = (8, 16, 32),
    cells: Sequence[int] | None = None,
    threads: int = 1,
    warmup: int | None = None,
    repeats: int | None = None,
    precision: str = "fp32",
    out: str | Path | None = None,
    quiet: bool = False,
) -> lut.LatencyTable:
    """Time every op of `space`'s networks at this input here; save the table (`out`, else `NAME.lut.json`).

    `cells`: the cell counts to cover, for spaces whose frame depends on them (darts; NB201
    tables cover any). `warmup` / `repeats` left None keep the space's kernels' defaults.
    `precision="int8"`: the op graphs are quantized (as `edgenas export --int8` does) and timed so.
    Returns the table (its `path` is the file written).
    """
    if space not in lut.SPACES:
        raise ConfigError(f"--space {space!r}: latency tables exist for {', '.join(lut.SPACES)} only")
    kernels = lut.latency_kernels(space)
    options = {k: v for k, v in (("warmup", warmup), ("repeats", repeats), ("cells", cells)) if v is not None}
    if "cells" in options and "cells" not in inspect.signature(kernels.profile).parameters:
        del options["cells"]  # tables of this space cover any number of cells
    table = kernels.profile(
        resolution,
        in_channels=in_channels,
        num_classes=classes,
        widths=widths,
        threads=threads,
        precision=precision,
        **options,
        quiet=quiet,
        name=name,
    )
    table.save(out or Path(f"{name}.lut.json"))
    return table


def check_latency_table(
    table: str | Path,
    *,
    n: int = 30,
    width: int = 16,
    cells: int | None = None,
    seed: int = 0,
    threads: int | None = None,
    warmup: int | None = None,
    repeats: int | None = None,
    precision: str | None = None,
    out: str | Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Predicted against measured latency of `n` random networks (C=`width`, N=`cells`) here.

    `cells` left None is the space's usual check depth (`DEFAULT_CHECK_CELLS` of its kernels, else 1).
    `precision`, when given, must be the table's (an INT8 table's networks are quantized and timed so).

    The rows go to `out` (default `TABLE.check.json`) and the plot next to it (`.png`);
    threads/warm-up/repeats left None are the table's. Returns `check_table`'s result plus
    `rows_file`, `plot` and `made_on` (the processor and onnxruntime of the table).
    """
    loaded = lut.LatencyTable.load(table)
    if precision is not None:
        loaded.require_precision(precision, f"profile-device --check --precision {precision}")
    if cells is None:
        cells = getattr(loaded.kernels, "DEFAULT_CHECK_CELLS", 1)
    shape = NetShape(width, cells, loaded.in_channels, loaded.resolution, loaded.num_classes)
    res = lut.check_table(loaded, shape, n, seed, threads=threads, warmup=warmup, repeats=repeats, quiet=quiet)
    table = Path(table)
    rows_file = Path(out) if out is not None else table.with_name(table.name.removesuffix(".json") + ".check.json")
    atomic_write_json(rows_file, res)
    png = lut.check_plot(rows_file.with_suffix(".png"), res)
    made_on = {"processor": loaded.processor, "onnxruntime": loaded.onnxruntime}
    return {**res, "rows_file": str(rows_file), "plot": str(png), "made_on": made_on}
