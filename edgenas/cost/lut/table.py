"""The latency table of one device: its file, what it covers, and the latency it predicts.

A table holds per-op latencies measured on the device (`entries`, ms) and a record of
which ops onnxruntime fused there (`fusion`); a space's LUT kernels
(`edgenas.spaces.<space>.latency`, see `LatencyKernels`) say which entries a network
needs and how they add up. One table class for every space, with readable keys, as in
Once-for-All's `LatencyTable` (Cai et al., ICLR 2020); the per-op sum follows nn-Meter
(Zhang et al., MobiSys 2021): predict a network from the kernels the runtime really runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edgenas.core.atomic import atomic_write_json
from edgenas.core.errors import ConfigError
from edgenas.core.space import NetShape
from edgenas.cost.lut.timing import BLOCK, CHAIN_EXTRA, STATISTIC

if TYPE_CHECKING:
    import numpy as np

    from edgenas.core.device import DeviceProfile
    from edgenas.core.space import Arch

# 2: tables record what onnxruntime fused on the device (`fusion`). Version 1 tables (no
# record) still load; their space's kernels read them with the fusion assumed before.
# 3: tables say their `precision`; written for INT8 tables only (float32 ones stay 2), so an
# edgenas that predates INT8 tables refuses one instead of reading it as float32.
SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
TABLE_KIND = "edgenas-latency-table"
PRECISIONS = ("fp32", "int8")  # a table's ops run as float32, or quantized as `edgenas export --int8` does


class LatencyKernels(Protocol):
    """What a space's `latency.py` module supplies to latency tables (see `edgenas.spaces.nb201.latency`)."""

    SUMMARY_COLUMNS: tuple[str, ...]
    REFERENCE: Arch  # the cheapest network of the space; `check_table` reports the machine's drift on it

    def required_keys(self, shape: NetShape) -> list[str]:
        """Every entry a prediction for `shape` reads."""
        ...

    def fusion_keys(self, shape: NetShape) -> list[str]:
        """Every fusion-record key a prediction for `shape` reads (tables that have a record)."""
        ...

    def check_fusion(self, fusion: dict[str, str]) -> None:
        """Raise `ValueError` naming the first malformed record value."""
        ...

    def predict_ms(self, table: LatencyTable, arch: Any, shape: NetShape) -> float:
        """Predicted latency of the space's network for `arch` at `shape` (the table covers `shape`)."""
        ...

    def edge_terms(self, table: LatencyTable, shape: NetShape) -> tuple[float, np.ndarray]:
        """`(fixed_ms, per-edge terms)` for a differentiable expected latency."""
        ...

    def position_terms(self, table: LatencyTable, shape: NetShape) -> tuple[float, np.ndarray]:
        """`(fixed_ms, (points, ops) terms)` over the space's choice points, for the expected latency
        of its supernet (`edgenas.cost.terms`). Optional: a space without it has no latency search."""
        ...

    def profile(self, resolution: int, **options: Any) -> LatencyTable:
        """Profile this machine: time every kernel, record its fusions."""
        ...

    def profile_spec(self, resolution: int, **options: Any) -> ProfileSpec:
        """The checked `ProfileSpec` of `profile`'s options (a `ConfigError` naming a bad one)."""
        ...

    def profile_graphs(self, spec: ProfileSpec, folder: Path, *, bar: Any = None) -> dict[str, Path]:
        """Write every op graph the table times into `folder`; returns graph name -> ONNX file."""
        ...

    def profile_fusion(self, spec: ProfileSpec, optimized: Any) -> dict[str, str]:
        """The fusion record, from `optimized(graph name)`: onnxruntime's optimised graph of that graph."""
        ...

    def profile_entries(self, spec: ProfileSpec, ms: dict[str, float], fusion: dict[str, str]) -> dict[str, float]:
        """The table's entries from the graphs' timings (ms by graph name) and the fusion record."""
        ...

    def check_archs(self, n: int, seed: int) -> list[Arch]:
        """`n` distinct archs to compare predictions with measurements on."""
        ...

    def summary_rows(self, table: LatencyTable) -> list[tuple[object, ...]]:
        """Rows of the console summary, one value per `SUMMARY_COLUMNS`."""
        ...


@dataclass(frozen=True)
class ProfileSpec:
    """What a profile covers: the space, the network input and output, the widths (and cell counts
    for spaces whose frame depends on them). The same spec builds the op graphs (`profile_graphs`)
    and turns their timings into entries (`profile_entries`), in-process or through a kit."""

    space: str
    resolution: int
    in_channels: int
    num_classes: int
    widths: tuple[int, ...]
    cells: tuple[int, ...] | None = None
    precision: str = "fp32"  # "int8": the graphs are quantized before they are timed (`quantize_graphs`)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"profile-device: precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")

    def shapes(self) -> list[NetShape]:
        """Every network shape the profile covers (one cell per stage where cells do not matter)."""
        return [
            NetShape(w, n, self.in_channels, self.resolution, self.num_classes)
            for w in self.widths
            for n in (self.cells or (1,))
        ]


def table_from_timings(
    spec: ProfileSpec,
    ms: dict[str, float],
    optimized: Any,
    *,
    threads: int,
    warmup: int,
    repeats: int,
    name: str = "",
    provenance: dict[str, Any] | None = None,
) -> LatencyTable:
    """The latency table of the timed op graphs of `spec` (`ms` by graph name, as `profile_graphs`
    names them); `optimized(name)` gives onnxruntime's optimised graph of one of them, from which
    the fusion record is read. `provenance`: onnxruntime, platform, processor, created, seconds."""
    kernels = latency_kernels(spec.space)
    fusion = kernels.profile_fusion(spec, optimized)
    entries = kernels.profile_entries(spec, ms, fusion)
    return LatencyTable(
        space=spec.space,
        resolution=spec.resolution,
        in_channels=spec.in_channels,
        num_classes=spec.num_classes,
        widths=list(spec.widths),
        precision=spec.precision,
        threads=threads,
        warmup=warmup,
        repeats=repeats,
        overhead_ms=ms["overhead"],
        entries=entries,
        fusion=fusion,
        name=name,
        graphs=dict(ms),
        **(provenance or {}),
    )


def profile_here(
    spec: ProfileSpec,
    *,
    threads: int,
    warmup: int,
    repeats: int,
    quiet: bool = False,
    name: str = "",
    workdir: str | Path | None = None,
) -> LatencyTable:
    """Build `spec`'s op graphs, time them on this machine (`time_interleaved`), read onnxruntime's
    fusions off their optimised graphs, and make the table: what a kit does on the device. An INT8
    spec's graphs are quantized first (`quantize_graphs`), so fusions and timings are the INT8 kernels'."""
    import platform
    import tempfile
    import time
    from datetime import datetime, timezone

    import onnxruntime

    from edgenas.core.progress import progress_bar
    from edgenas.cost.lut.timing import (
        optimized_graph,
        processor,
        quantize_graphs,
        round_count,
        session,
        time_interleaved,
    )

    start = time.perf_counter()
    kernels = latency_kernels(spec.space)
    with tempfile.TemporaryDirectory(prefix="edgenas-lut-", dir=workdir) as tmp, progress_bar(quiet) as bar:
        files = kernels.profile_graphs(spec, Path(tmp), bar=bar)
        if spec.precision == "int8":
            files = quantize_graphs(files, bar=bar)
        graphs = {g: session(path, threads) for g, path in files.items()}
        task = bar.add_task("time ops", total=round_count(repeats), status=f"{len(graphs)} graphs, {repeats} runs each")
        timed = time_interleaved(graphs, warmup=warmup, repeats=repeats, advance=lambda k: bar.advance(task, k))
        table = table_from_timings(
            spec,
            {g: t["ms"] for g, t in timed.items()},
            lambda g: optimized_graph(files[g]),
            threads=threads,
            warmup=warmup,
            repeats=repeats,
            name=name,
            provenance={
                "onnxruntime": onnxruntime.__version__,
                "platform": platform.platform(),
                "processor": processor(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        )
    table.seconds = round(time.perf_counter() - start, 2)
    return table


def latency_kernels(space: str) -> LatencyKernels:
    """The LUT kernels of a registered space: its `edgenas.spaces.<space>.latency` module."""
    from edgenas.spaces import SPACES

    module = f"edgenas.spaces.{space}.latency"
    if space in SPACES:
        try:
            return importlib.import_module(module)  # type: ignore[return-value]
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
    have = ", ".join(latency_spaces()) or "none"
    raise ConfigError(f"no latency kernels for the {space!r} space; latency tables exist for {have}")


# Kernels a space may lack: the legacy per-edge terms, and the split profiler the kit and
# INT8 tables are built from (such a space profiles in-process, float32, through `profile`).
OPTIONAL_KERNELS = (
    "edge_terms",
    "position_terms",
    "profile_spec",
    "profile_graphs",
    "profile_fusion",
    "profile_entries",
)
KIT_KERNELS = ("profile_spec", "profile_graphs", "profile_fusion", "profile_entries")


def kit_kernels(space: str) -> LatencyKernels:
    """`latency_kernels(space)` for the profiling kit: a space without the split profiler
    (`KIT_KERNELS`) is a one-line `ConfigError`."""
    kernels = latency_kernels(space)
    missing = [k for k in KIT_KERNELS if not hasattr(kernels, k)]
    if missing:
        raise ConfigError(
            f"--kit: the {space!r} space's latency table is profiled in-process only (its latency.py has no "
            f"{', '.join(missing)}); run edgenas profile-device --space {space} on the device"
        )
    return kernels


def latency_spaces() -> tuple[str, ...]:
    """The registered spaces (`edgenas.spaces.SPACES`) whose folder has a `latency.py`."""
    from edgenas.spaces import SPACES

    return tuple(n for n in SPACES.names() if importlib.util.find_spec(f"edgenas.spaces.{n}.latency") is not None)


@dataclass
class LatencyTable:
    """A per-op latency table of one device: settings, provenance, `entries` (ms) and the `fusion` record.

    `fusion` maps readable keys to what onnxruntime's optimised graph showed on the
    profiling machine (for nb201, e.g. `"conv:16x8x8": "nchwc"`); empty for tables made
    before it was recorded, which their space reads with the fusion assumed then.
    """

    space: str
    resolution: int
    in_channels: int
    num_classes: int
    widths: list[int]
    threads: int
    warmup: int
    repeats: int
    overhead_ms: float
    entries: dict[str, float]
    fusion: dict[str, str] = field(default_factory=dict)
    precision: str = "fp32"  # of the ops timed: a table predicts networks deployed at this precision
    name: str = ""
    block: int = BLOCK
    chain_extra: int = CHAIN_EXTRA
    statistic: str = STATISTIC
    onnxruntime: str = ""
    platform: str = ""
    processor: str = ""
    created: str = ""
    seconds: float = 0.0
    # raw timings of every graph (ms), for the curious; predictions use `entries` only
    graphs: dict[str, float] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)

    # ---- file
    def to_dict(self) -> dict[str, Any]:
        """The JSON document (schema-versioned: 3 for an INT8 table, a float32 one as before: 2, or 1
        without a fusion record)."""
        d = asdict(self)
        d.pop("path")
        if not self.fusion:
            d.pop("fusion")
        if self.precision == "fp32":
            d.pop("precision")
        version = SCHEMA_VERSION if self.precision != "fp32" else 2 if self.fusion else 1
        return {"schema_version": version, "kind": TABLE_KIND, **d}

    def save(self, path: str | Path) -> Path:
        """Write the table atomically as JSON; returns the path."""
        self.path = Path(path)
        return atomic_write_json(self.path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read a table written by `save` (this or an earlier schema); a bad file is a `ConfigError` naming it."""
        path = Path(path)
        hint = "make one with `edgenas profile-device`"
        if not path.is_file():
            raise ConfigError(f"latency table {path}: no such file; {hint}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"latency table {path}: not readable JSON ({str(e).splitlines()[0]}); {hint}") from None
        try:
            table = cls._from_dict(data)
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"latency table {path}: not an edgenas latency table ({e}); {hint}") from None
        table.path = path
        return table

    @classmethod
    def _from_dict(cls, data: Any) -> LatencyTable:
        if not isinstance(data, dict):
            raise TypeError("expected a JSON object")
        if data.get("kind") != TABLE_KIND:
            raise ValueError(f"'kind' is {data.get('kind')!r}, expected {TABLE_KIND!r}")
        version = data.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise ValueError(f"schema_version {version!r}; this edgenas reads {', '.join(map(str, READABLE_VERSIONS))}")
        required = ("space", "resolution", "in_channels", "num_classes", "widths", "threads", "warmup", "repeats")
        missing = [k for k in (*required, "overhead_ms", "entries") if k not in data]
        if missing:
            raise KeyError(f"missing {', '.join(missing)}")
        ints = {k: data[k] for k in ("resolution", "in_channels", "num_classes", "threads", "warmup", "repeats")}
        for k, v in ints.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if k == "warmup" else 1):
                raise ValueError(f"{k} must be a positive int, got {v!r}")
        widths = data["widths"]
        if not isinstance(widths, list) or not widths or not all(isinstance(w, int) and w > 0 for w in widths):
            raise ValueError(f"widths must be a list of positive ints, got {widths!r}")
        overhead = data["overhead_ms"]
        if isinstance(overhead, bool) or not isinstance(overhead, int | float) or not math.isfinite(overhead):
            raise ValueError(f"overhead_ms is {overhead!r}, not a number of ms")
        entries = data["entries"]
        if not isinstance(entries, dict):
            raise TypeError("entries must be an object of name: ms")
        for k, v in entries.items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"entry {k!r} is {v!r}, not a number of ms")
        if version == 1 and "fusion" in data:
            raise ValueError("a schema_version 1 table has no fusion record")
        fusion = data.get("fusion", {})
        if not isinstance(fusion, dict) or not all(isinstance(v, str) for v in fusion.values()):
            raise TypeError("fusion must be an object of name: text")
        if version >= 2 and not fusion:
            raise ValueError("the fusion record is empty")
        if version < SCHEMA_VERSION and "precision" in data:
            raise ValueError(f"a schema_version {version} table has no precision")
        if version == SCHEMA_VERSION and data.get("precision") not in PRECISIONS:
            raise ValueError(f"precision is {data.get('precision')!r}, expected one of {', '.join(PRECISIONS)}")
        if fusion and data["space"] in latency_spaces():
            latency_kernels(data["space"]).check_fusion(fusion)  # other spaces: checked when used
        known = {f for f in cls.__dataclass_fields__ if f != "path"}
        return cls(**{k: v for k, v in data.items() if k in known})

    def _source(self) -> str:
        return str(self.path) if self.path is not None else f"latency table {self.name or '(unsaved)'}"

    @property
    def kernels(self) -> LatencyKernels:
        """The LUT kernels of the table's space (a `ConfigError` if the space has none)."""
        try:
            return latency_kernels(self.space)
        except ConfigError as e:
            raise ConfigError(f"{self._source()}: {e}") from None

    # ---- coverage
    def _mismatch(self, shape: NetShape) -> str | None:
        """Why `shape` is not covered, or None."""
        try:
            kernels = latency_kernels(self.space)
        except ConfigError:
            return f"it is for the {self.space!r} space, which has no latency kernels here"
        wrong = [
            f"{label} {got} (table: {have})"
            for label, got, have in (
                ("resolution", shape.resolution, self.resolution),
                ("in_channels", shape.in_channels, self.in_channels),
                ("classes", shape.num_classes, self.num_classes),
            )
            if got != have
        ]
        if wrong:
            return "it was made for another input/output: " + ", ".join(wrong)
        if shape.width not in self.widths:
            return f"it has widths {','.join(map(str, self.widths))}, not {shape.width}"
        # a space whose INT8 kernels differ (darts: pools in either layout) takes the precision
        by_precision = "precision" in inspect.signature(kernels.required_keys).parameters
        needed = (
            kernels.required_keys(shape, precision=self.precision) if by_precision else kernels.required_keys(shape)
        )
        missing = [k for k in needed if k not in self.entries]
        if missing:
            return f"it lacks {len(missing)} entries, e.g. {missing[0]}"
        if self.fusion:
            missing = [k for k in kernels.fusion_keys(shape) if k not in self.fusion]
            if missing:
                return f"its fusion record lacks {len(missing)} keys, e.g. {missing[0]}"
        return None

    def covers(self, shape: NetShape) -> bool:
        """True when every entry a network of `shape` needs is in the table (NB201: any number of cells)."""
        return self._mismatch(shape) is None

    def _require(self, shape: NetShape) -> None:
        why = self._mismatch(shape)
        if why is None:
            return
        same_io = (shape.resolution, shape.in_channels, shape.num_classes) == (
            self.resolution,
            self.in_channels,
            self.num_classes,
        )
        widths = sorted(set(self.widths) | {shape.width}) if same_io else [shape.width]
        depth = ""
        try:  # a space whose frame depends on the depth (darts) is profiled per cell count
            if "cells" in inspect.signature(latency_kernels(self.space).profile).parameters:
                depth = f" --cells {shape.cells}"
        except ConfigError:
            pass
        raise ConfigError(
            f"{self._source()} does not cover width {shape.width} at {shape.in_channels}x{shape.resolution}x"
            f"{shape.resolution} with {shape.num_classes} classes: {why}; rerun `edgenas profile-device "
            f"--name {self.name or 'DEVICE'} --space {self.space} --resolution {shape.resolution} "
            f"--in-channels {shape.in_channels} --classes {shape.num_classes} "
            f"--widths {','.join(map(str, widths))}{depth} --threads {self.threads}"
            f"{' --precision ' + self.precision if self.precision != 'fp32' else ''}` on the device"
        )

    def require_precision(self, precision: str, user: str) -> None:
        """A `ConfigError` when the table's ops were timed at another precision than `user` deploys at."""
        if self.precision != precision:
            raise ConfigError(
                f"{user} runs {precision} networks but {self._source()} holds {self.precision} op latencies; "
                f"make a {precision} table with `edgenas profile-device --precision {precision}` on the device"
            )

    # ---- predictions
    def predict_ms(self, arch: Any, shape: NetShape) -> float:
        """Predicted batch-1 latency (ms) of the space's network for `arch` (or its string) at `shape`.

        The sum of the entries of the kernels onnxruntime runs for that network on the
        table's device (see the space's `latency.predict_ms`). A shape the table does not
        cover is a `ConfigError` saying how to extend the table.
        """
        self._require(shape)
        return self.kernels.predict_ms(self, arch, shape)

    def position_terms(self, shape: NetShape) -> tuple[float, np.ndarray]:
        """`(fixed_ms, (points, ops) terms)` for a differentiable expected latency of the space's supernet.

        The space's kernels' `position_terms` (rows in `choice_points()` order, columns in
        `choice_ops` order); a space whose kernels have none is a `ConfigError`.
        """
        self._require(shape)
        kernels = self.kernels
        if not hasattr(kernels, "position_terms"):
            raise ConfigError(
                f"{self._source()}: the {self.space!r} space's latency kernels give no per-position terms, "
                "so a search cannot hold a latency budget in it yet"
            )
        return kernels.position_terms(self, shape)

    def nb201_terms(self, shape: NetShape) -> tuple[float, np.ndarray]:
        """Per-edge latency terms `(fixed_ms, terms)` for a differentiable expected latency.

        See `edgenas.spaces.nb201.latency.edge_terms`; kept under this name for the
        NB201 cost terms and the search code that call it.
        """
        self._require(shape)
        return self.kernels.edge_terms(self, shape)


# --------------------------------------------------------------------------- device profiles
_TABLE_CACHE: dict[tuple[str, int], LatencyTable] = {}


def latency_table_for(profile: DeviceProfile) -> LatencyTable | None:
    """The latency table a device profile points at (`latency.source: table`), or None.

    Tables are cached by path and modification time, so a search loop can call this for
    every candidate. A bad table file, or one timed at another precision than the profile
    deploys at, is a `ConfigError` naming the profile and the file.
    """
    spec = profile.latency
    if spec.source != "table":
        return None
    if not spec.table:
        raise ConfigError(f"device profile {profile.name!r}: latency.source is 'table' but latency.table is not set")
    path = Path(spec.table)
    try:
        key = (str(path.resolve()), path.stat().st_mtime_ns)
    except OSError:
        key = None
    if key is None or key not in _TABLE_CACHE:
        try:
            table = LatencyTable.load(path)
        except ConfigError as e:
            raise ConfigError(f"device profile {profile.name!r}: {e}") from None
        if key is None:
            table.require_precision(profile.precision, f"device profile {profile.name!r}")
            return table
        _TABLE_CACHE[key] = table
    table = _TABLE_CACHE[key]
    table.require_precision(profile.precision, f"device profile {profile.name!r}")
    return table
