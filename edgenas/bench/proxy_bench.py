"""`edgenas bench proxies`: how well each proxy ranks a ground truth (Kendall tau, Spearman rho).

Each τ comes with its 95% bootstrap interval over archs (fixed seed), since on 100-odd archs a
τ difference of a few hundredths is noise; when the truth has >= 2 seeds per arch its own
split-half τ is reported beside them (two half-truths' agreement; a noiseless score judged
against the mean of all seeds can exceed it).

Every arch of the ground-truth file is built at the ground truth's own macro shape (width,
cells, input) and scored with every proxy on the same noise batch (and, for the proxies
that use labels, the same real batch). Besides each single proxy, the AZ aggregate
(sum of log ranks of the four AZ proxies) and its linear rank-sum ablation are scored.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from edgenas.bench.correlation import kendall, spearman
from edgenas.bench.stats import kendall_difference, kendall_interval
from edgenas.bench.truth import read_protocol, read_truth, truth_reliability
from edgenas.core.atomic import atomic_write_text
from edgenas.core.compute import resolve_device
from edgenas.core.errors import ConfigError
from edgenas.core.progress import progress_bar
from edgenas.core.rundir import RunDir
from edgenas.core.space import NetShape
from edgenas.data import dataset_info
from edgenas.data.sample_batch import sample_batch
from edgenas.proxies import AZ_PROXIES, available, az_aggregate, linear_rank_sum
from edgenas.proxies.pool import expand_proxy_names, score_arch
from edgenas.report.plots import proxy_scatter_grid
from edgenas.spaces import get_space


def bench_proxies(
    truth: str | Path,
    names: str | Sequence[str] | None = None,
    *,
    run: RunDir | None = None,
    run_dir: str | Path | None = None,
    batch: int = 64,
    seed: int = 0,
    compute: str = "auto",
    quiet: bool = False,
) -> dict[str, Any]:
    """Score every ground-truth arch with every proxy; write correlations, per-arch values and plots.

    `names`: a comma list or list of proxies (`az` = the four AZ-NAS ones; default: every
    registered proxy). `seed` fixes the proxies' batches and the bootstrap of the τ intervals
    (`kendall_tau_interval`). The results go to `run`, or to a new run folder (`run_dir`, default
    `runs/bench-proxies-TIME`); returns `results.json`'s content plus `run_dir`.
    """
    names = expand_proxy_names(names) if names else available()
    if run is None:
        run = RunDir.create("bench-proxies", run_dir)
        run.write_config(
            {
                "command": "bench proxies",
                "options": {"truth": str(truth), "proxies": names, "batch": batch, "seed": seed},
            }
        )
    truth = Path(truth)
    protocol = read_protocol(truth)
    rows = read_truth(truth, protocol["seeds"])
    if len(rows) < 3:
        raise ConfigError(f"{truth}: needs at least 3 trained archs for a correlation, found {len(rows)}")
    space = get_space(protocol["space"])
    shape = NetShape.for_data(
        dataset_info(protocol["dataset"], protocol.get("data_dir")), protocol["width"], protocol["cells"]
    )
    device = resolve_device(compute)
    real = sample_batch(
        protocol["dataset"],
        protocol.get("data_dir"),
        batch=batch,
        seed=seed,
        subset=protocol["subset"],
        val_fraction=protocol["val_fraction"],
    )
    values: dict[str, list[float]] = {n: [] for n in names}
    seconds: dict[str, float] = dict.fromkeys(names, 0.0)
    with progress_bar(quiet) as bar:
        task = bar.add_task("proxies", total=len(rows), status="")
        for row in rows:
            v, s = score_arch(space, row["arch"], shape, names, batch=batch, seed=seed, device=device, real_batch=real)
            for n in names:
                values[n].append(v[n])
                seconds[n] += s[n]
            bar.update(task, advance=1)
    acc = [r["test_accuracy"] for r in rows]
    columns: dict[str, list[float]] = dict(values)
    if all(n in names for n in AZ_PROXIES):
        az_table = {n: values[n] for n in AZ_PROXIES}
        columns["AZ (log-rank sum)"] = az_aggregate(az_table).tolist()
        columns["AZ linear rank sum"] = linear_rank_sum(az_table).tolist()
    taus = {n: kendall(col, acc) for n, col in columns.items()}
    rhos = {n: spearman(col, acc) for n, col in columns.items()}
    intervals = {n: kendall_interval(col, acc, seed=seed).as_dict() for n, col in columns.items()}
    az = columns.get("AZ (log-rank sum)")
    # AZ − each other score, judged on the same resampled archs (paired): does AZ rank better?
    az_minus = {
        n: kendall_difference(az, col, acc, seed=seed).as_dict()
        for n, col in columns.items()
        if az is not None and n != "AZ (log-rank sum)"
    }
    reliability = truth_reliability(truth, seed=seed) if protocol["seeds"] >= 2 else None
    per_arch_s = {n: seconds[n] / len(rows) for n in names}
    _write_values(run.file("proxies.csv"), rows, columns)
    proxy_scatter_grid(run.file("correlations.png"), acc, columns, taus)
    results = {
        "command": "bench proxies",
        "truth": str(truth),
        "archs": len(rows),
        "protocol": protocol,
        "proxy_batch": batch,
        "seed": seed,
        "compute": str(device),
        "threads": torch.get_num_threads(),
        "kendall_tau": taus,
        "kendall_tau_interval": intervals,
        "az_minus_kendall_tau": az_minus,
        "spearman_rho": rhos,
        "truth_reliability": reliability,
        "seconds_per_arch": per_arch_s,
    }
    run.write_results(results)
    return {**results, "run_dir": str(run.path)}


def _write_values(path: Path, rows: list[dict[str, Any]], columns: dict[str, list[float]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["arch", "test_accuracy", *columns])
    for i, row in enumerate(rows):
        writer.writerow([row["arch"], row["test_accuracy"], *(columns[n][i] for n in columns)])
    atomic_write_text(path, buf.getvalue())
