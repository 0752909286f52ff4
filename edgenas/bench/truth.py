"""Ground truth for training-free screening: train N archs with one fixed, recorded protocol.

Each arch is trained with `seeds` training seeds (init and batch order; the data split is
the protocol's) and tested on the full test split. The file is JSON lines, one finished
(arch, seed) run a line, appended and fsynced by the parent as each job completes, so an
interrupted build loses only the runs in flight; rerunning the same command trains only
the missing runs, and raising `--seeds` on a finished file trains only the new seeds.
`read_truth` folds the runs into one row per arch (`test_accuracies` per seed,
`test_accuracy` their mean), so every reader sees one row per complete arch; a line of a
file built before seeds existed is seed 0. The protocol lives in a sidecar
`<file>.protocol.json`; resuming with a different protocol is refused, because mixing
protocols would make the accuracies incomparable. `truth_reliability` measures how well
the truth agrees with itself across seeds: how much of a proxy's τ its noise can hide.
`bench_truth` is the command (`edgenas bench truth`); `build_truth` takes a ready `TruthProtocol`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from edgenas.core.atomic import atomic_write_json
from edgenas.core.errors import ConfigError, Interrupted
from edgenas.core.jsonl import append_jsonl, read_jsonl
from edgenas.core.progress import progress_bar
from edgenas.core.seeding import derive_seed, numpy_rng
from edgenas.core.space import NetShape
from edgenas.exec.executor import Executor, Job, make_executor, run_all, threads_per_job
from edgenas.spaces import get_space

TRUTH_SCHEMA_VERSION = 2  # 2: `seeds`, per-(arch, seed) lines, `test_images`


class TruthProtocol(BaseModel):
    """Everything that determines an arch's accuracy in the ground truth."""

    model_config = ConfigDict(extra="forbid")

    space: str = "nb201"
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    width: int = Field(8, ge=1)
    cells: int = Field(1, ge=1)
    subset: int | None = Field(10000, ge=1)
    val_fraction: float = 0.1
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = 0.1
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    seed: int = 0
    seeds: int = Field(1, ge=1, description="training seeds per arch; seed index 0 trains with `seed` itself")


def run_seed(protocol_seed: int, seed_index: int) -> int:
    """The training seed of run `seed_index` of an arch: the protocol seed itself for index 0
    (what a one-seed truth always used), a seed derived from it for the others."""
    return protocol_seed if seed_index == 0 else derive_seed(protocol_seed, "truth-seed", seed_index)


def read_truth_runs(path: str | Path) -> dict[str, dict[int, dict[str, Any]]]:
    """Every finished run of a ground-truth file: arch -> seed index -> its line, in file order.

    A line without `seed_index` (written before seeds existed) is seed 0; a torn last line is
    skipped, and a repeated (arch, seed) keeps its first line.
    """
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for line in read_jsonl(path):
        runs.setdefault(line["arch"], {}).setdefault(int(line.get("seed_index", 0)), line)
    return runs


def truth_seeds(path: str | Path) -> int:
    """The seeds per arch that the file's protocol asks for (1 without a sidecar or a `seeds` entry)."""
    pfile = _protocol_file(Path(path))
    if not pfile.is_file():
        return 1
    return int(json.loads(pfile.read_text())["protocol"].get("seeds", 1))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def read_truth(path: str | Path, seeds: int | None = None) -> list[dict[str, Any]]:
    """One row per arch that has all `seeds` runs (default: the protocol's), in file order.

    A row is its seed-0 line (arch, params, flops, ...) with `test_accuracies` and
    `val_accuracies` per seed, `test_accuracy`, `val_accuracy` and `final_train_loss` their
    means, and `seconds` / `train_seconds` summed over the seeds. Archs still missing a seed
    (a build in progress) are left out.
    """
    seeds = truth_seeds(path) if seeds is None else seeds
    rows = []
    for arch, by_seed in read_truth_runs(path).items():
        if not all(k in by_seed for k in range(seeds)):
            continue
        runs = [by_seed[k] for k in range(seeds)]
        row = {k: v for k, v in runs[0].items() if k not in ("seed_index", "seed")}
        row["arch"] = arch
        row["seeds"] = seeds
        row["test_accuracies"] = [r["test_accuracy"] for r in runs]
        row["test_accuracy"] = _mean(row["test_accuracies"])
        if all("val_accuracy" in r for r in runs):
            row["val_accuracies"] = [r["val_accuracy"] for r in runs]
            row["val_accuracy"] = _mean(row["val_accuracies"])
        for key in ("final_train_loss",):
            if all(key in r for r in runs):
                row[key] = _mean([r[key] for r in runs])
        for key in ("seconds", "train_seconds"):
            if all(key in r for r in runs):
                row[key] = round(sum(r[key] for r in runs), 2)
        rows.append(row)
    return rows


def _protocol_file(out: Path) -> Path:
    return out.with_name(out.name + ".protocol.json")


def read_protocol(truth: str | Path) -> dict[str, Any]:
    """The protocol of a ground-truth file (its sidecar); `seeds` is 1 for a file built before seeds existed."""
    pfile = _protocol_file(Path(truth))
    if not pfile.is_file():
        raise ConfigError(f"{pfile} is missing; build the ground truth with `edgenas bench truth`")
    protocol = json.loads(pfile.read_text())["protocol"]
    protocol.setdefault("seeds", 1)
    return protocol


def _check_protocol(out: Path, protocol: TruthProtocol, test_images: int) -> None:
    """Write the sidecar of a new file; refuse another protocol; record a raised `seeds`."""
    pfile = _protocol_file(out)
    new = protocol.model_dump()
    if pfile.is_file():
        stored = read_protocol(out)
        diff = sorted(k for k in {*stored, *new} - {"seeds"} if stored.get(k) != new.get(k))
        if diff:
            raise ConfigError(
                f"{out} was built with another protocol (differs in: {', '.join(diff)}); "
                "use the same options or another output file"
            )
        if protocol.seeds < stored["seeds"]:
            raise ConfigError(
                f"{out} holds {stored['seeds']} seeds per arch; --seeds {protocol.seeds} would hide some: "
                f"use --seeds {stored['seeds']} (or more) or another output file"
            )
        if protocol.seeds == stored["seeds"]:
            return
    atomic_write_json(
        pfile,
        {
            "schema_version": TRUTH_SCHEMA_VERSION,
            "protocol": new,
            "test_set": "full",  # every arch is tested on the whole official test split
            "test_images": test_images,
            "torch": torch.__version__,
        },
    )


# -- worker side ------------------------------------------------------------------------
_DATA: dict[str, Any] = {}


def _protocol_data(p: TruthProtocol):
    """The protocol's data, loaded once per worker process (a pool worker trains many archs)."""
    from edgenas.data import load_dataset

    key = p.model_dump_json()
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = load_dataset(p.dataset, p.data_dir, seed=p.seed, val_fraction=p.val_fraction, subset=p.subset)
    return _DATA[key]


def train_one(arch: str, protocol: dict[str, Any], seed_index: int = 0) -> dict[str, Any]:
    """Train one arch with training seed `seed_index` under `protocol` (an executor job); returns its line."""
    from edgenas.cost import count_flops, count_params
    from edgenas.data import BatchLoader
    from edgenas.train.evaluate import evaluate
    from edgenas.train.trainer import TrainConfig, Trainer

    p = TruthProtocol(**protocol)
    seed = run_seed(p.seed, seed_index)
    data = _protocol_data(p)
    space = get_space(p.space)
    shape = NetShape.for_data(data.info, p.width, p.cells)
    t0 = time.perf_counter()
    torch.manual_seed(derive_seed(seed, "init", arch))
    model = space.build(space.parse(arch), shape)
    params, flops = count_params(model), count_flops(model, shape.input_shape)
    cfg = TrainConfig(
        epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, weight_decay=p.weight_decay, schedule=p.schedule, seed=seed
    )
    trainer = Trainer(model, data, cfg, torch.device("cpu"), quiet=True)
    result = trainer.fit()
    val = evaluate(trainer.model, BatchLoader(data.val, 512), torch.device("cpu"))
    return {
        "arch": arch,
        "seed_index": seed_index,
        "seed": seed,
        "test_accuracy": result["test_accuracy"],
        "test_images": result["test_images"],
        "val_accuracy": val["accuracy"],
        "final_train_loss": result["history"][-1]["train_loss"],
        "params": params,
        "flops": flops,
        "train_seconds": result["train_seconds"],
        "seconds": round(time.perf_counter() - t0, 2),
        "threads": torch.get_num_threads(),
    }


# -- parent side ------------------------------------------------------------------------
def sample_archs(space_name: str, n: int, seed: int) -> list[str]:
    """`n` distinct archs drawn uniformly from the space (disconnected cells included, as in NAS-Bench-201)."""
    space = get_space(space_name)
    total = space.size()
    if total is not None and n > total:
        raise ConfigError(f"--n {n}: the {space_name} space has only {total} architectures")
    return [str(a) for a in space.sample_distinct(n, numpy_rng(seed, "truth-sample"))]


def read_arch_list(path: str | Path, space_name: str) -> list[str]:
    """Arch strings from a file, one a line (blank lines and # comments skipped), validated."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--archs {path}: no such file")
    space = get_space(space_name)
    archs = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            archs.append(str(space.parse(line)))
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"{path}:{lineno}: {exc}") from None
    if not archs:
        raise ConfigError(f"--archs {path}: no architecture strings in the file")
    return list(dict.fromkeys(archs))


def build_truth(
    out: str | Path,
    protocol: TruthProtocol,
    *,
    n: int | None = None,
    archs: list[str] | None = None,
    workers: int = 2,
    executor: str = "local",
    address: str | None = None,
    quiet: bool = False,
    threads: int | None = None,
) -> list[dict[str, Any]]:
    """Train the (arch, seed) runs of the sampled (or listed) archs not yet in `out`; returns
    `read_truth(out)` (one row per complete arch, the archs not asked for included).

    `threads` per job defaults to this machine's cores split between the `workers`.

    Each (arch, seed) is one job of `edgenas.exec` (`executor` local processes or Ray), so a
    big ground truth can be spread over a cluster; the lines land in `out` as jobs finish.
    """
    from edgenas.data import load_dataset

    out = Path(out)
    data = load_dataset(
        protocol.dataset,
        protocol.data_dir,
        seed=protocol.seed,
        val_fraction=protocol.val_fraction,
        subset=protocol.subset,
    )  # fail fast on a bad dataset, before any process starts
    wanted = archs if archs is not None else sample_archs(protocol.space, n or 0, protocol.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    _check_protocol(out, protocol, len(data.test))
    done = read_truth_runs(out)
    todo = [(a, k) for a in wanted for k in range(protocol.seeds) if k not in done.get(a, {})]
    if todo:
        ex = make_executor(executor, workers=workers, address=address)
        try:
            already = len(wanted) * protocol.seeds - len(todo)
            _run_jobs(out, protocol, todo, ex, threads or threads_per_job(workers), quiet, already=already)
        finally:
            ex.close()
    return read_truth(out, protocol.seeds)


def bench_truth(
    out: str | Path,
    *,
    n: int | None = None,
    archs: str | Path | list[str] | None = None,
    workers: int = 2,
    executor: str = "local",
    address: str | None = None,
    quiet: bool = False,
    **protocol: Any,
) -> list[dict[str, Any]]:
    """`edgenas bench truth`: train `n` sampled archs, or the `archs` listed (a file or a list), into `out`.

    `protocol` holds `TruthProtocol` fields (space, dataset, width, epochs, ...; the rest keep
    its defaults). Rerunning with the same protocol continues; returns every line of `out`.
    """
    if (n is None) == (archs is None):
        raise ConfigError("edgenas bench truth needs exactly one of --n N (sample) or --archs FILE (listed)")
    if protocol.get("data_dir") is not None:
        protocol["data_dir"] = str(protocol["data_dir"])
    proto = TruthProtocol(**protocol)
    space = proto.space
    if isinstance(archs, (str, Path)):
        archs = read_arch_list(archs, space)
    elif archs is not None:
        archs = list(dict.fromkeys(str(get_space(space).parse(a)) for a in archs))
    return build_truth(out, proto, n=n, archs=archs, workers=workers, executor=executor, address=address, quiet=quiet)


def _run_jobs(
    out: Path,
    protocol: TruthProtocol,
    todo: list[tuple[str, int]],
    executor: Executor,
    threads: int,
    quiet: bool,
    already: int,
) -> None:
    proto = protocol.model_dump()
    jobs = [
        Job(f"{arch}#{k}", "edgenas.bench.truth:train_one", {"arch": arch, "protocol": proto, "seed_index": k}, threads)
        for arch, k in todo
    ]
    with progress_bar(quiet) as bar:
        task = bar.add_task("ground truth", total=already + len(todo), completed=already, status="")

        def save(_: str, row: dict[str, Any]) -> None:
            append_jsonl(out, row)
            bar.update(task, advance=1, status=f"last {row['test_accuracy'] * 100:.1f}%")

        try:
            run_all(executor, jobs, save)
        except KeyboardInterrupt:
            raise Interrupted(f"finished runs are saved in {out}; rerun the same command to continue") from None


RELIABILITY_TARGET = 0.7  # issue 15: a truth whose seeds agree at τ >= 0.7


def truth_reliability(truth: str | Path, *, samples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """How well a multi-seed truth agrees with itself across seeds (its noise, in τ and in points).

    `split_half_tau`: Kendall τ between the means of two disjoint halves of the seeds (seed 0 vs
    seed 1 for 2 seeds), with a bootstrap interval over archs (`samples` resamples, fixed
    `seed`); `std_points_mean` / `std_points_max`: the per-arch standard deviation over seeds
    (ddof 1) in accuracy points, averaged and maximal over archs; `between_arch_std_points`: the
    spread of the seed means across archs, to set beside the seed noise. `rank_icc` is the
    single-seed reliability (stats.rank_icc); from it, `predicted_split_half_tau` (to check the
    model against `split_half_tau`), `tau_ceiling` (what a perfect score can reach against the
    seed mean) and `seeds_for_target`: seeds per arch in each of two independent truths for
    them to agree at τ `target_tau` (issue 15's 0.7; None: no signal between archs).
    Needs >= 2 seeds and >= 3 archs.
    """
    from edgenas.bench.stats import predicted_tau, rank_icc, seeds_for_tau, split_half_interval, tau_ceiling

    truth = Path(truth)
    protocol = read_protocol(truth)
    if protocol["seeds"] < 2:
        raise ConfigError(
            f"{truth} has 1 seed per arch; reliability needs >= 2 "
            "(rerun the command that built it with --seeds 2: only seed 1 is trained)"
        )
    rows = read_truth(truth, protocol["seeds"])
    if len(rows) < 3:
        raise ConfigError(f"{truth}: reliability needs at least 3 archs with every seed, found {len(rows)}")
    acc = np.array([r["test_accuracies"] for r in rows], dtype=float)
    std = acc.std(axis=1, ddof=1) * 100
    iv = split_half_interval(acc, samples=samples, seed=seed)
    icc = rank_icc(acc)
    return {
        "truth": str(truth),
        "archs": len(rows),
        "seeds": int(acc.shape[1]),
        "split_half_tau": iv.estimate,
        "split_half_interval": iv.as_dict(),
        "std_points_mean": float(std.mean()),
        "std_points_max": float(std.max()),
        "std_points_max_arch": rows[int(std.argmax())]["arch"],
        "between_arch_std_points": float(acc.mean(axis=1).std(ddof=1) * 100),
        "rank_icc": icc,
        "predicted_split_half_tau": predicted_tau(icc, acc.shape[1] // 2),
        "tau_ceiling": tau_ceiling(icc, acc.shape[1]),
        "target_tau": RELIABILITY_TARGET,
        "seeds_for_target": seeds_for_tau(icc, RELIABILITY_TARGET),
        "protocol": protocol,
    }
