"""How well a latency table predicts whole networks on this machine, and its console summary.

`check_table` exports random networks of the table's space (quantized, for an INT8 table),
times them whole with the table's protocol and compares: MAPE, Kendall tau and Spearman rho of predicted against
measured latency, plus the drift of the machine since profiling (the space's reference
network is predicted by the frame measured at profiling time).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edgenas.core.errors import ConfigError
from edgenas.core.space import NetShape
from edgenas.cost.lut.table import LatencyTable
from edgenas.cost.lut.timing import (
    STATISTIC,
    Feed,
    check_settings,
    processor,
    quantize_network,
    round_count,
    session,
    time_interleaved,
)

CHECK_SCHEMA_VERSION = 1  # of the result document (the table's own schema is `table.SCHEMA_VERSION`)


def check_table(
    table: LatencyTable,
    shape: NetShape,
    n: int = 30,
    seed: int = 0,
    *,
    threads: int | None = None,
    warmup: int | None = None,
    repeats: int | None = None,
    quiet: bool = True,
    workdir: str | Path | None = None,
) -> dict[str, Any]:
    """Predicted against measured latency of `n` random distinct networks of the table's space.

    Each network is exported (and quantized as `edgenas export --int8` does, for an INT8
    table) and timed whole with onnxruntime under the table's threads,
    warm-up and repeats (overridable) and its timing statistic, all networks interleaved
    as the table's graphs were. Also timed: the space's reference network, whose
    prediction is the frame measured at profiling time, so `reference.drift_pct` tells how
    much faster or slower the machine runs now than when the table was made (not corrected
    for). Returns the rows and MAPE (%), Kendall tau and Spearman rho of predicted against
    `measured_ms` (the table's statistic); `median_ms`, the plain median of all timed
    runs, is kept per row, with `mape_vs_median_pct`, for comparison.
    """
    import onnxruntime

    from edgenas.core.progress import progress_bar
    from edgenas.export.onnx import export_onnx
    from edgenas.spaces import get_space

    table._require(shape)
    kernels = table.kernels
    threads = table.threads if threads is None else threads
    warmup = table.warmup if warmup is None else warmup
    repeats = table.repeats if repeats is None else repeats
    check_settings(threads, warmup, repeats)
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ConfigError(f"check: n must be an int >= 2 (two networks to rank at least), got {n!r}")
    start = time.perf_counter()
    space = get_space(table.space)
    archs = kernels.check_archs(n, seed)
    nets = {str(a): a for a in archs}
    reference = str(kernels.REFERENCE)
    nets.setdefault(reference, kernels.REFERENCE)
    graphs: dict[str, Feed] = {}
    with tempfile.TemporaryDirectory(prefix="edgenas-lut-check-", dir=workdir) as tmp, progress_bar(quiet) as bar:
        task = bar.add_task("export nets", total=len(nets), status="")
        for i, (text, arch) in enumerate(nets.items()):
            path = export_onnx(
                space.build(arch, shape), shape.input_shape, Path(tmp) / f"n{i}.onnx", dynamic_batch=False
            )
            if table.precision == "int8":
                path = quantize_network(path, shape.input_shape, text)
            graphs[text] = session(path, threads)
            bar.advance(task)
        task = bar.add_task("time nets", total=round_count(repeats), status=f"{len(graphs)} nets, {repeats} runs each")
        timed = time_interleaved(graphs, warmup=warmup, repeats=repeats, advance=lambda k: bar.advance(task, k))
    here = {"processor": processor(), "onnxruntime": onnxruntime.__version__}
    res = compare_timed(table, shape, archs, timed, reference=reference, here=here)
    return {
        **res,
        "seed": seed,
        "threads": threads,
        "warmup": warmup,
        "repeats": repeats,
        "seconds": round(time.perf_counter() - start, 2),
    }


def compare_timed(
    table: LatencyTable,
    shape: NetShape,
    archs: Sequence[Any],
    timed: Mapping[str, Mapping[str, float]],
    *,
    reference: str,
    here: dict[str, str],
) -> dict[str, Any]:
    """The statistics of predicted against measured latency: `timed[str(arch)]` holds `ms` (the
    table's statistic) and `median_ms` of every arch and of the `reference` network, measured on
    the machine `here` names (processor, onnxruntime), here or on the device by a kit's runner."""
    from edgenas.bench.correlation import kendall, spearman

    kernels = table.kernels
    rows = []
    for arch in archs:
        pred, t = table.predict_ms(arch, shape), timed[str(arch)]
        rows.append(
            {
                "arch": str(arch),
                "predicted_ms": pred,
                "measured_ms": t["ms"],
                "median_ms": t["median_ms"],
                "error_pct": 100 * (pred - t["ms"]) / t["ms"],
            }
        )
    predicted = np.array([r["predicted_ms"] for r in rows])
    measured = np.array([r["measured_ms"] for r in rows])
    medians = np.array([r["median_ms"] for r in rows])
    errors = np.abs(predicted - measured) / measured
    ref_pred, ref_meas = table.predict_ms(kernels.REFERENCE, shape), timed[reference]["ms"]
    return {
        "schema_version": CHECK_SCHEMA_VERSION,
        "table": str(table.path) if table.path else None,
        "device": table.name,
        "precision": table.precision,
        "shape": asdict(shape),
        "n": len(rows),
        "statistic": STATISTIC,
        # the check measures here: a table made elsewhere (another CPU / runtime) is not comparable
        "same_machine": all(getattr(table, k) == v for k, v in here.items()),
        "here": here,
        # "recorded": the table's own record of onnxruntime's fusions; "assumed": an older table without one
        "fusion": "recorded" if table.fusion else "assumed",
        "mape_pct": float(100 * errors.mean()),
        "max_error_pct": float(100 * errors.max()),
        "bias_pct": float(100 * np.mean((predicted - measured) / measured)),
        "within_10pct": float(np.mean(errors <= 0.10)),
        "kendall_tau": kendall(predicted, measured),
        "spearman_rho": spearman(predicted, measured),
        "mape_vs_median_pct": float(100 * np.mean(np.abs(predicted - medians) / medians)),
        "reference": {
            "arch": reference,
            "predicted_ms": ref_pred,
            "measured_ms": ref_meas,
            "drift_pct": 100 * (ref_meas - ref_pred) / ref_pred,
        },
        "rows": rows,
    }


def check_plot(path: str | Path, result: Mapping[str, Any]) -> Path:
    """Predicted against measured latency, one point per network, the y = x line and +-10 % band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pred = np.array([r["predicted_ms"] for r in result["rows"]])
    meas = np.array([r["measured_ms"] for r in result["rows"]])
    lo, hi = 0.9 * min(pred.min(), meas.min()), 1.1 * max(pred.max(), meas.max())
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    line = np.array([lo, hi])
    ax.plot(line, line, color="black", lw=1, label="predicted = measured")
    ax.fill_between(line, line / 1.1, line * 1.1, color="tab:gray", alpha=0.2, label="±10 %")
    ax.scatter(meas, pred, s=18, color="tab:blue", edgecolor="black", linewidth=0.4, zorder=3)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency (ms, whole network, onnxruntime)")
    ax.set_ylabel("predicted latency (ms, sum of table entries)")
    shape = result["shape"]
    ax.set_title(
        f"{result.get('device') or 'latency table'} ({result.get('precision', 'fp32')}): "
        f"C={shape['width']} N={shape['cells']} "
        f"{shape['resolution']}px, {result['n']} nets\nMAPE {result['mape_pct']:.1f} %, "
        f"Kendall τ {result['kendall_tau']:.3f}, Spearman ρ {result['spearman_rho']:.3f}",
        fontsize=9,
    )
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def summary_rows(table: LatencyTable) -> list[tuple[object, ...]]:
    """Rows for a console summary of the table, one value per its space's `SUMMARY_COLUMNS`."""
    return table.kernels.summary_rows(table)
