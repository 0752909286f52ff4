"""Profiling kits: a latency table made on a device that has only Python, numpy and onnxruntime.

`write_kit` writes, into one folder, every op graph a table of the space needs (the space's
`profile_graphs`, the very files `edgenas profile-device` times in-process), whole networks
for a check (the space's `check_archs` plus its reference network, at each width), a
`kit.json` manifest and `runner.py` (`edgenas.cost.lut.runner`, copied verbatim); a kit for
an INT8 table (`precision="int8"`) carries both quantized, as `profile_here` times them. On the
device, `python runner.py` times them and writes `<name>.timings.json`; back here,
`import_timings` validates that file and makes the table with the same code as an
in-process profile (`table_from_timings`), and `check_kit` compares the table's
predictions with the whole networks the device timed (MAPE, Kendall tau), so the check
needs nothing but the kit either. nn-Meter (Zhang et al., MobiSys 2021) profiles kernels on
the device the same way; the kit removes its need for the full toolchain there.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from edgenas.core.atomic import atomic_write_json
from edgenas.core.errors import ConfigError
from edgenas.core.space import NetShape
from edgenas.cost.lut import runner
from edgenas.cost.lut.table import (
    PRECISIONS,
    LatencyTable,
    ProfileSpec,
    kit_kernels,
    latency_spaces,
    table_from_timings,
)
from edgenas.cost.lut.timing import (
    DEFAULT_REPEATS,
    DEFAULT_WARMUP,
    check_settings,
    quantize_graphs,
    quantize_network,
)

KIT_SCHEMA_VERSION = 1
DEFAULT_CHECK_NETS = 30


def _stand_in_graph() -> Any:
    """A one-node graph: what `write_kit` hands a space's fusion code to learn which optimised graphs it reads."""
    node = SimpleNamespace(op_type="Identity", domain="", input=["input"], output=["output"], attribute=[])
    return SimpleNamespace(node=[node], output=[SimpleNamespace(name="output")])


def write_kit(
    folder: str | Path,
    *,
    space: str,
    resolution: int,
    in_channels: int = 1,
    classes: int = 10,
    widths: Sequence[int] = (8, 16, 32),
    cells: Sequence[int] | None = None,
    threads: int = 1,
    warmup: int | None = None,
    repeats: int | None = None,
    n: int = DEFAULT_CHECK_NETS,
    seed: int = 0,
    precision: str = "fp32",
    name: str = "device",
    quiet: bool = False,
) -> dict[str, Any]:
    """Write a profiling kit for `space` at this input into `folder`; returns its manifest (`kit.json`).

    The check networks are `n` of the space's `check_archs(n, seed)` plus its reference
    network, at every width and at the space's check depth (`DEFAULT_CHECK_CELLS`, else 1
    cell per stage). `threads` / `warmup` / `repeats` are the runner's defaults. `precision`
    "int8": op graphs and networks are quantized (`quantize_graphs`, `quantize_network`).
    """
    from edgenas.core.progress import progress_bar
    from edgenas.export.onnx import export_onnx
    from edgenas.spaces import get_space

    if space not in latency_spaces():
        raise ConfigError(f"--space {space!r}: latency tables exist for {', '.join(latency_spaces())} only")
    warmup = DEFAULT_WARMUP if warmup is None else warmup
    repeats = DEFAULT_REPEATS if repeats is None else repeats
    check_settings(threads, warmup, repeats)
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ConfigError(f"--n must be an int >= 2 (two networks to rank at least), got {n!r}")
    kernels = kit_kernels(space)
    options: dict[str, Any] = {
        "in_channels": in_channels,
        "num_classes": classes,
        "widths": widths,
        "precision": precision,
    }
    if cells:
        options["cells"] = cells
    spec: ProfileSpec = kernels.profile_spec(resolution, **options)
    folder = Path(folder)
    if (folder / "kit.json").exists() or (folder.exists() and any(folder.iterdir())):
        raise ConfigError(f"--kit {folder}: the folder is not empty; give a new folder")
    (folder / "graphs").mkdir(parents=True)
    (folder / "nets").mkdir()
    sp = get_space(space)
    check_cells = getattr(kernels, "DEFAULT_CHECK_CELLS", 1)
    archs = [*kernels.check_archs(n, seed), kernels.REFERENCE]
    with progress_bar(quiet) as bar:
        files = kernels.profile_graphs(spec, folder / "graphs", bar=bar)
        if spec.precision == "int8":
            files = quantize_graphs(files, bar=bar)
        nets: dict[str, str] = {}
        checks = []
        task = bar.add_task("export check nets", total=len(spec.widths) * len(archs), status="")
        for width in spec.widths:
            shape = NetShape(width, check_cells, in_channels, resolution, classes)
            by_arch = {}
            for arch in archs:
                net = f"C{width}N{check_cells}/n{len(by_arch)}"
                path = folder / "nets" / f"w{width}_n{len(by_arch)}.onnx"
                export_onnx(sp.build(arch, shape), shape.input_shape, path, dynamic_batch=False)
                if spec.precision == "int8":
                    quantize_network(path, shape.input_shape, str(arch))
                nets[net] = path.relative_to(folder).as_posix()
                by_arch[str(arch)] = net
                bar.advance(task)
            checks.append({"shape": asdict(shape), "nets": by_arch, "reference": str(kernels.REFERENCE)})
    optimized: list[str] = []

    def record(gname: str) -> Any:
        optimized.append(gname)
        return _stand_in_graph()

    kernels.profile_fusion(spec, record)
    shutil.copyfile(runner.__file__, folder / "runner.py")
    manifest = {
        "kind": runner.KIT_KIND,
        "schema_version": KIT_SCHEMA_VERSION,
        "name": name,
        "spec": asdict(spec),
        "settings": {"threads": threads, "warmup": warmup, "repeats": repeats},
        "graphs": {g: p.relative_to(folder).as_posix() for g, p in files.items()},
        "optimized": sorted(set(optimized)),
        "nets": nets,
        "checks": checks,
        "seed": seed,
    }
    atomic_write_json(folder / "kit.json", manifest)
    return manifest


def _bad(path: Path, why: str) -> ConfigError:
    return ConfigError(
        f"{path}: not a usable kit timings file ({why}); run the kit's runner.py on the device again "
        "and bring back the file it writes"
    )


def _numbers(path: Path, label: str, values: Any, names: Sequence[str]) -> dict[str, float]:
    """`values` as name -> positive finite ms, covering every one of `names`."""
    if not isinstance(values, dict):
        raise _bad(path, f"{label} is not an object of name: ms")
    missing = [n for n in names if n not in values]
    if missing:
        raise _bad(path, f"{label} lacks {len(missing)} of the kit's graphs, e.g. {missing[0]!r}")
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise _bad(path, f"{label}[{k!r}] is {v!r}, not a positive number of ms")
    return {k: float(v) for k, v in values.items()}


def _summary_graph(path: Path, gname: str, summary: Any) -> Any:
    """A runner's `graph_summary` as the attribute tree the spaces' fusion code reads."""
    try:
        nodes = [
            SimpleNamespace(
                op_type=str(n["op_type"]),
                domain=str(n["domain"]),
                input=[str(x) for x in n["input"]],
                output=[str(x) for x in n["output"]],
                attribute=[SimpleNamespace(name=str(a)) for a in n["attribute"]],
            )
            for n in summary["node"]
        ]
        outputs = [SimpleNamespace(name=str(o)) for o in summary["output"]]
    except (KeyError, TypeError) as e:
        raise _bad(path, f"optimised graph {gname!r} is malformed ({e})") from None
    if not nodes or not outputs:
        raise _bad(path, f"optimised graph {gname!r} has no nodes or no output")
    return SimpleNamespace(node=nodes, output=outputs)


def load_timings(path: str | Path) -> dict[str, Any]:
    """Read and validate a runner's timings file; any problem is one `ConfigError` line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such kit timings file; run the kit's runner.py on the device first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(path, f"not readable JSON: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or data.get("kind") != runner.RESULT_KIND:
        raise _bad(path, f"'kind' is not {runner.RESULT_KIND!r}")
    if data.get("schema_version") != runner.RESULT_SCHEMA_VERSION:
        raise _bad(path, f"schema_version {data.get('schema_version')!r}, this edgenas reads 1")
    kit = data.get("kit")
    if not isinstance(kit, dict) or kit.get("kind") != runner.KIT_KIND or kit.get("schema_version") != 1:
        raise _bad(path, "it does not carry the kit's manifest")
    try:
        spec = kit["spec"]
        if spec["space"] not in latency_spaces():
            raise _bad(path, f"space {spec['space']!r} has no latency kernels here")
        if spec.get("precision", "fp32") not in PRECISIONS:
            raise _bad(path, f"precision {spec['precision']!r} is not one of {', '.join(PRECISIONS)}")
        graphs, nets, optimized = dict(kit["graphs"]), dict(kit["nets"]), list(kit["optimized"])
        checks = list(kit["checks"])
    except (KeyError, TypeError, ValueError) as e:
        raise _bad(path, f"the kit's manifest is malformed ({e})") from None
    for key in ("threads", "warmup", "repeats"):
        v = data.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if key == "warmup" else 1):
            raise _bad(path, f"{key} is {v!r}")
    data["ms"] = _numbers(path, "ms", data.get("ms"), list(graphs))
    data["nets_ms"] = _numbers(path, "nets_ms", data.get("nets_ms"), list(nets))
    medians = data.get("nets_median_ms")
    data["nets_median_ms"] = _numbers(path, "nets_median_ms", medians, list(nets)) if medians else data["nets_ms"]
    summaries = data.get("optimized")
    if not isinstance(summaries, dict) or any(g not in summaries for g in optimized):
        raise _bad(path, "optimised graphs are missing")
    data["optimized"] = {g: _summary_graph(path, g, summaries[g]) for g in optimized}
    if not all(isinstance(c, dict) and {"shape", "nets", "reference"} <= set(c) for c in checks):
        raise _bad(path, "the kit's check networks are malformed")
    return data


def import_timings(
    path: str | Path, *, out: str | Path | None = None, precision: str | None = None
) -> tuple[LatencyTable, dict[str, Any]]:
    """The latency table of a kit's timings file, saved to `out` (default `<name>.lut.json` beside it).

    `precision`, when given, must be the kit's (else a `ConfigError`, nothing saved). Returns
    the table and the validated timings (for `check_kit`).
    """
    path = Path(path)
    data = load_timings(path)
    kit = data["kit"]
    spec_fields = dict(kit["spec"])
    try:
        spec = ProfileSpec(
            **{**spec_fields, "widths": tuple(spec_fields["widths"]), "cells": _tuple(spec_fields.get("cells"))}
        )
        table = table_from_timings(
            spec,
            data["ms"],
            lambda g: data["optimized"][g],
            threads=data["threads"],
            warmup=data["warmup"],
            repeats=data["repeats"],
            name=kit.get("name") or "",
            provenance={k: str(data.get(k, "")) for k in ("onnxruntime", "platform", "processor", "created")},
        )
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise _bad(path, f"cannot make a table from it: {type(e).__name__} {e}") from None
    table.seconds = float(data.get("seconds") or 0.0)
    if precision is not None:
        table.require_precision(precision, f"profile-device --import --precision {precision}")
    table.save(Path(out) if out is not None else path.with_name(f"{kit.get('name') or 'device'}.lut.json"))
    return table, data


def _tuple(values: Any) -> tuple[int, ...] | None:
    return None if values is None else tuple(values)


def check_kit(table: LatencyTable, data: dict[str, Any]) -> list[dict[str, Any]]:
    """Predicted against the device's own whole-network timings, one result per check shape of the kit.

    Each result has `check_table`'s statistics (MAPE, Kendall tau, Spearman rho, reference
    drift), with `here` the device the runner ran on.
    """
    from edgenas.cost.lut.check import compare_timed

    here = {"processor": str(data.get("processor", "")), "onnxruntime": str(data.get("onnxruntime", ""))}
    results = []
    for check in data["kit"]["checks"]:
        shape = NetShape(**check["shape"])
        timed = {
            arch: {"ms": data["nets_ms"][net], "median_ms": data["nets_median_ms"][net]}
            for arch, net in check["nets"].items()
        }
        archs = [a for a in check["nets"] if a != check["reference"]]
        res = compare_timed(table, shape, archs, timed, reference=check["reference"], here=here)
        res.update(
            seed=data["kit"].get("seed", 0),
            threads=data["threads"],
            warmup=data["warmup"],
            repeats=data["repeats"],
            seconds=float(data.get("seconds") or 0.0),
            source="kit",
        )
        results.append(res)
    return results
