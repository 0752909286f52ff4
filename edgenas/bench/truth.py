"""Ground truth for training-free screening: train N archs with one fixed, recorded protocol.

Output is a JSON-lines file, one finished arch a line, appended and fsynced by the parent
as each job completes, so an interrupted build loses only the archs in flight; rerunning
the same command skips archs already in the file. The protocol lives in a sidecar
`<file>.protocol.json`; resuming with a different protocol is refused, because mixing
protocols would make the accuracies incomparable. `bench_truth` is the command
(`edgenas bench truth`); `build_truth` takes a ready `TruthProtocol`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

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

TRUTH_SCHEMA_VERSION = 1


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


def read_truth(path: str | Path) -> list[dict[str, Any]]:
    """All complete lines of a ground-truth file (a torn last line is skipped)."""
    return read_jsonl(path)


def _protocol_file(out: Path) -> Path:
    return out.with_name(out.name + ".protocol.json")


def _check_protocol(out: Path, protocol: TruthProtocol) -> None:
    pfile = _protocol_file(out)
    if pfile.is_file():
        stored = json.loads(pfile.read_text())["protocol"]
        if stored != protocol.model_dump():
            diff = sorted(k for k in stored if stored.get(k) != protocol.model_dump().get(k))
            raise ConfigError(
                f"{out} was built with another protocol (differs in: {', '.join(diff)}); "
                "use the same options or another output file"
            )
    else:
        atomic_write_json(
            pfile,
            {"schema_version": TRUTH_SCHEMA_VERSION, "protocol": protocol.model_dump(), "torch": torch.__version__},
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


def train_one(arch: str, protocol: dict[str, Any]) -> dict[str, Any]:
    """Train one arch under `protocol` (an executor job); returns its ground-truth line."""
    from edgenas.cost import count_flops, count_params
    from edgenas.data import BatchLoader
    from edgenas.train.evaluate import evaluate
    from edgenas.train.trainer import TrainConfig, Trainer

    p = TruthProtocol(**protocol)
    data = _protocol_data(p)
    space = get_space(p.space)
    shape = NetShape.for_data(data.info, p.width, p.cells)
    t0 = time.perf_counter()
    torch.manual_seed(derive_seed(p.seed, "init", arch))
    model = space.build(space.parse(arch), shape)
    params, flops = count_params(model), count_flops(model, shape.input_shape)
    cfg = TrainConfig(
        epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, weight_decay=p.weight_decay, schedule=p.schedule, seed=p.seed
    )
    trainer = Trainer(model, data, cfg, torch.device("cpu"), quiet=True)
    result = trainer.fit()
    val = evaluate(trainer.model, BatchLoader(data.val, 512), torch.device("cpu"))
    return {
        "arch": arch,
        "test_accuracy": result["test_accuracy"],
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
    """Train the sampled (or listed) archs not yet in `out`; returns every line of `out`.

    `threads` per job defaults to this machine's cores split between the `workers`.

    Each arch is one job of `edgenas.exec` (`executor` local processes or Ray), so a big
    ground truth can be spread over a cluster; the lines land in `out` as jobs finish.
    """
    from edgenas.data import load_dataset

    out = Path(out)
    load_dataset(
        protocol.dataset,
        protocol.data_dir,
        seed=protocol.seed,
        val_fraction=protocol.val_fraction,
        subset=protocol.subset,
    )  # fail fast on a bad dataset, before any process starts
    wanted = archs if archs is not None else sample_archs(protocol.space, n or 0, protocol.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    _check_protocol(out, protocol)
    done = {row["arch"] for row in read_truth(out)}
    todo = [a for a in wanted if a not in done]
    if todo:
        ex = make_executor(executor, workers=workers, address=address)
        try:
            _run_jobs(
                out, protocol, todo, ex, threads or threads_per_job(workers), quiet, already=len(wanted) - len(todo)
            )
        finally:
            ex.close()
    return read_truth(out)


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
    out: Path, protocol: TruthProtocol, todo: list[str], executor: Executor, threads: int, quiet: bool, already: int
) -> None:
    jobs = [
        Job(arch, "edgenas.bench.truth:train_one", {"arch": arch, "protocol": protocol.model_dump()}, threads)
        for arch in todo
    ]
    with progress_bar(quiet) as bar:
        task = bar.add_task("ground truth", total=already + len(todo), completed=already, status="")

        def save(_: str, row: dict[str, Any]) -> None:
            append_jsonl(out, row)
            bar.update(task, advance=1, status=f"last {row['test_accuracy'] * 100:.1f}%")

        try:
            run_all(executor, jobs, save)
        except KeyboardInterrupt:
            raise Interrupted(f"finished archs are saved in {out}; rerun the same command to continue") from None
