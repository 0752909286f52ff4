"""`edgenas bench e2e RUN`: does a run's pick beat the obvious alternatives, trained the same way?

Per device of a finished `edgenas run`, arms inside every budget: `pick` (the run's selected
arch), `largest` (the arch with the most FLOPs: the whole space is costed exactly when it can be
enumerated, else a large seeded sample; latency is measured the profile's way, walking down from
the largest, until one fits), `random` (a seeded uniform draw, walked the same way), and the
stock networks a user would pick instead of a search (`stock`: MobileNetV3-Small, Howard et al.
ICCV 2019, and MobileNetV2, Sandler et al. CVPR 2018) at the largest width multiplier that meets
every budget, found by `edgenas baseline`'s search (`largest_fitting`); a device no multiplier
fits records why and has no such arm. Each arm is trained over several seeds exactly as the run
trains its students (distilled from its teacher, `cfg.train`; a FiLM teacher codes a stock
network by its FLOPs and params), so "pick − largest" comes with a paired 95% interval over seeds
instead of one anecdotal number. Everything runs through the executor and is recorded in
`RUN/e2e/state.json` as it finishes: a rerun continues, a larger `--seeds` only adds seeds, and
arms missing from an older state (the stock ones) are added.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgenas.core.atomic import atomic_write_json
from edgenas.core.cost import Cost
from edgenas.core.device import DeviceProfile
from edgenas.core.errors import ConfigError, Interrupted, ResumeError, UserError
from edgenas.core.progress import progress_bar
from edgenas.core.rundir import RunDir
from edgenas.core.seeding import derive_seed, numpy_rng
from edgenas.core.space import NetShape, SearchSpace
from edgenas.exec.executor import Job, make_executor, run_all
from edgenas.spaces.mobile.stock import FAMILIES, stock_name

SCHEMA_VERSION = 1
ARMS = ("pick", "largest", "random")
STOCK = FAMILIES  # the stock arms, in report order (`--stock none`: none of them)
ENUMERATE_LIMIT = 50_000  # spaces up to this many archs are costed whole (NB201: 15,625)
DEFAULT_SAMPLE = 20_000  # else a seeded sample of this many distinct archs
COST_CHUNK = 250  # archs per costing job
LATENCY_TRIES = 100  # archs walked (latency measured) per arm before giving up


class E2EState:
    """`RUN/e2e/state.json`: the costing pool's settings and every finished job's result."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "state.json"
        data = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.pool: dict[str, Any] | None = data.get("pool")
        self.jobs: dict[str, Any] = data.get("jobs", {})

    def save(self) -> None:
        atomic_write_json(self.path, {"version": SCHEMA_VERSION, "pool": self.pool, "jobs": self.jobs})

    def record(self, key: str, result: Any) -> None:
        self.jobs[key] = result
        self.save()


def train_seed(run_seed: int, k: int) -> int:
    """The training seed of the k-th e2e seed: shared by every arm (the pairing), and never the
    run's own seed, so no arm reuses the run's trained student."""
    return derive_seed(run_seed, "bench-e2e", k) % (2**31)


def arch_key(arch: str) -> str:
    """A short, file-name-safe name for an arch string (NB201 strings are full of `|` and `~`)."""
    return hashlib.sha1(arch.encode()).hexdigest()[:12]


def cost_job(*, archs: list[str], space: str, shape: dict[str, int]) -> list[list[int]]:
    """Exact params, FLOPs and peak activation bytes of each arch at the deployed shape."""
    from edgenas.cost.measure import measure_cost
    from edgenas.spaces import get_space

    sp, net = get_space(space), NetShape(**shape)
    out = []
    for a in archs:
        c = measure_cost(sp.build(sp.parse(a), net).eval(), net.input_shape, latency=None)
        out.append([c.params, c.flops, c.peak_memory_bytes])
    return out


def stock_families(names: Sequence[str]) -> tuple[str, ...]:
    """The stock arms asked for, in report order; `["none"]` (the CLI's off switch) or nothing: none."""
    names = list(names)
    if "none" in names:
        if len(names) > 1:
            raise UserError("--stock none means no stock arm; give it alone")
        return ()
    bad = [n for n in names if n not in FAMILIES]
    if bad:
        raise UserError(f"--stock: unknown {', '.join(map(repr, bad))}; give some of {', '.join(FAMILIES)}, or none")
    return tuple(f for f in FAMILIES if f in names)


def open_finished_run(run_dir: str | Path) -> RunDir:
    """The run folder of a finished `edgenas run`; one clear line for anything else."""
    path = Path(run_dir)
    if not (path / "config.yaml").is_file():
        raise ResumeError(f"{path}: not an edgenas run folder (no config.yaml)")
    run = RunDir(path)
    made_by = run.read_config().get("command")
    if made_by != "run":
        raise ResumeError(f"{path}: made by `edgenas {made_by}`, not `edgenas run`; bench e2e needs a pipeline run")
    if not (path / "results.json").is_file() or not (path / "state.json").is_file():
        raise ResumeError(f"{path}: the run has not finished (no results.json); resume it with `edgenas run --resume`")
    return run


def bench_e2e(
    run_dir: str | Path,
    *,
    seeds: int = 3,
    sample: int | None = None,
    stock: Sequence[str] = STOCK,
    executor: str = "local",
    workers: int = 2,
    address: str | None = None,
    threads: int | None = None,
    compute: str = "auto",
    gpus_per_job: float | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train pick / largest / random per device of a finished run over `seeds` seeds; write
    `e2e.json`, `e2e.png` and the report's "End-to-end check" section; return `e2e.json`'s content.

    `sample`: cost a seeded sample of this many archs instead of the whole space (the default
    enumerates spaces of up to 50,000 archs and samples 20,000 from larger ones).
    `stock`: the stock families trained as arms too (`STOCK`; empty: none).
    `gpus_per_job`: GPUs each Ray job asks for (default: one when `compute` means CUDA).
    """
    if seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {seeds}")
    if sample is not None and sample < 1:
        raise UserError(f"--sample must be >= 1, got {sample}")
    stock = stock_families(stock)
    run = open_finished_run(run_dir)
    ex = make_executor(executor, workers=workers, address=address, gpus_per_job=gpus_per_job, compute=compute)
    try:
        from edgenas.pipeline.run import _Lock

        with _Lock(run):
            return _E2E(
                run, ex, seeds=seeds, sample=sample, stock=stock, threads=threads, compute=compute, quiet=quiet
            ).run()
    except KeyboardInterrupt:
        again = shlex.join(
            ["edgenas", "bench", "e2e", str(run.path), "--seeds", str(seeds)]
            + (["--sample", str(sample)] if sample else [])
            + ([] if stock == STOCK else ["--stock", *(stock or ["none"])])
        )
        raise Interrupted(f"finished work is saved in {run.path / 'e2e'}; continue with: {again}") from None
    finally:
        ex.close()


class _E2E:
    """One session of the benchmark over a run folder; finished jobs are skipped."""

    def __init__(
        self,
        run: RunDir,
        ex: Any,
        *,
        seeds: int,
        sample: int | None,
        stock: tuple[str, ...],
        threads: int | None,
        compute: str,
        quiet: bool,
    ) -> None:
        from edgenas.pipeline.config import RunConfig
        from edgenas.pipeline.run import Pipeline, PipelineState
        from edgenas.spaces import get_space

        stored = run.read_config()
        cfg = RunConfig.model_validate(stored["options"])
        if threads is not None:
            cfg.executor.threads = threads
        self.profiles = [DeviceProfile(**p) for p in stored["profiles"]]
        # the run's own Pipeline builds the training jobs: the students' protocol by construction
        self.pipeline = Pipeline(cfg, self.profiles, run, ex, compute=compute, quiet=quiet)
        self.cfg, self.run_dir, self.ex, self.quiet = cfg, run, ex, quiet
        self.run_jobs = PipelineState(run).jobs
        self.seeds, self.sample, self.stock = seeds, sample, stock
        self.space: SearchSpace = get_space(cfg.space.name)
        self.shape: NetShape = self.pipeline.shape
        self.folder = run.path.resolve() / "e2e"
        self.folder.mkdir(exist_ok=True)
        self.state = E2EState(self.folder)
        self.train_jobs: dict[str, Job] = {}

    # -- jobs ---------------------------------------------------------------------------
    def _jobs(self, stage: str, jobs: list[Job]) -> None:
        """Run the jobs not yet finished, recording each result the moment it arrives."""
        todo = [j for j in jobs if j.key not in self.state.jobs]
        if not todo:
            return
        self.run_dir.event("e2e_stage_start", stage=stage, jobs=len(todo), executor=self.ex.name)
        with progress_bar(self.quiet) as bar:
            task = bar.add_task(f"e2e {stage}", total=len(jobs), completed=len(jobs) - len(todo), status="")

            def done(key: str, result: Any) -> None:
                self.state.record(key, result)
                bar.update(task, advance=1, status=key)

            run_all(self.ex, todo, done)

    def _in_parent(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self.state.jobs:
            self.state.record(key, fn())
        return self.state.jobs[key]

    # -- the pool of costed archs ---------------------------------------------------------
    def _pool(self) -> list[str]:
        size = self.space.size()
        if self.sample is None and size is not None and size <= ENUMERATE_LIMIT:
            archs = [str(a) for a in self.space.enumerate()]
            settings = {"kind": "enumerated", "size": size}
        else:
            n = self.sample or DEFAULT_SAMPLE
            drawn = self.space.sample_distinct(n, numpy_rng(self.cfg.seed, "bench-e2e-pool"))
            archs = [str(a) for a in drawn]
            settings = {"kind": "sample", "requested": n, "size": size}
        settings["archs"] = len(archs)
        if self.state.pool is None:
            self.state.pool = settings
            self.state.save()
        elif self.state.pool != settings:
            raise ResumeError(
                f"{self.folder} was started costing {_describe_pool(self.state.pool)}, now "
                f"{_describe_pool(settings)}; rerun with the same --sample, or delete that folder to start over"
            )
        return archs

    def cost_pool(self, archs: list[str]) -> dict[str, Cost]:
        """Exact static costs (params, FLOPs, peak memory) of every arch of the pool."""
        chunks = [archs[i : i + COST_CHUNK] for i in range(0, len(archs), COST_CHUNK)]
        shape = {f: getattr(self.shape, f) for f in ("width", "cells", "in_channels", "resolution", "num_classes")}
        jobs = [
            Job(
                f"cost/{i}",
                "edgenas.bench.e2e:cost_job",
                {"archs": chunk, "space": self.cfg.space.name, "shape": shape},
                threads=self.pipeline.threads,
            )
            for i, chunk in enumerate(chunks)
        ]
        self._jobs("cost", jobs)
        costs: dict[str, Cost] = {}
        for i, chunk in enumerate(chunks):
            for arch, (params, flops, peak) in zip(chunk, self.state.jobs[f"cost/{i}"], strict=True):
                costs[arch] = Cost(params, flops, peak)
        return costs

    # -- the arms -------------------------------------------------------------------------
    def choose_arms(self, costs: dict[str, Cost]) -> None:
        """Per device, the largest-FLOPs and a random arch inside every budget (recorded: a rerun
        keeps them even though a latency measured again could differ in its last digits)."""
        for p in self.profiles:
            self._in_parent(f"arms/{p.name}", lambda p=p: self._choose(p, costs))

    def _choose(self, p: DeviceProfile, costs: dict[str, Cost]) -> dict[str, Any]:
        inside = [a for a, c in costs.items() if p.fits(c)]  # latency not measured yet
        if not inside:
            raise UserError(f"device {p.name!r}: no arch of the costed pool meets its static budgets")
        largest = sorted(inside, key=lambda a: (-costs[a].flops, -costs[a].params, a))
        rng = numpy_rng(self.cfg.seed, "bench-e2e-random", p.name)
        shuffled = [inside[i] for i in rng.permutation(len(inside))]
        out: dict[str, Any] = {"static_fit": len(inside)}
        for arm, order in (("largest", largest), ("random", shuffled)):
            out[arm] = self._first_fitting(p, order, arm)
        return out

    def _first_fitting(self, p: DeviceProfile, order: list[str], arm: str) -> dict[str, Any]:
        """Walk `order`, measuring every cost the profile's way, until an arch meets every budget."""
        from edgenas.cost.budget_check import check_arch_on_device

        for tries, arch in enumerate(order[:LATENCY_TRIES], start=1):
            cost, checks = check_arch_on_device(self.space, arch, self.shape, p)
            if not [c for c in checks if c.passed is False]:
                return {"arch": arch, "cost": cost.to_dict(), "tries": tries}
        raise UserError(
            f"device {p.name!r}: none of the {min(len(order), LATENCY_TRIES)} {arm} candidates inside its static "
            "budgets meets its latency budget when measured here"
        )

    def fit_stock(self) -> None:
        """Per device and stock family, the largest multiplier meeting every budget (`edgenas baseline`'s
        search), or why none does (recorded: the arm is absent for that device)."""
        for p in self.profiles:
            for family in self.stock:
                self._in_parent(f"stock/{p.name}/{family}", lambda p=p, family=family: self._fit(p, family))

    def _fit(self, p: DeviceProfile, family: str) -> dict[str, Any]:
        from edgenas.pipeline.baseline import largest_fitting

        try:
            multiplier, cost = largest_fitting(family, p, self.shape)
        except ConfigError as exc:
            self.run_dir.event("e2e_stock_absent", device=p.name, family=family, reason=str(exc))
            return {"absent": str(exc)}
        arch = stock_name(family, multiplier)
        return {"arch": arch, "family": family, "multiplier": multiplier, "cost": cost.to_dict()}

    def _stock(self, p: DeviceProfile) -> dict[str, dict[str, Any]]:
        """The fitted stock arms of a device asked for this session (absent ones included)."""
        return {f: self.state.jobs[f"stock/{p.name}/{f}"] for f in self.stock}

    # -- training ---------------------------------------------------------------------------
    def train(self) -> None:
        jobs = self.train_jobs = {}
        fitted = {s["arch"]: s for p in self.profiles for s in self._stock(p).values() if "arch" in s}
        for arch in self._archs():
            for k in range(self.seeds):
                key = f"train/{arch_key(arch)}/seed{k}"
                folder = str(self.folder / "train" / f"{arch_key(arch)}-seed{k}")
                job = self.pipeline.student_job(key, folder, arch, seed=train_seed(self.cfg.seed, k))
                if arch in fitted:  # the same options, a stock network instead of an arch of the space
                    kw = {n: v for n, v in job.kwargs.items() if n not in ("arch", "command")}
                    kw.update(family=fitted[arch]["family"], multiplier=fitted[arch]["multiplier"])
                    job = Job(key, "edgenas.pipeline.jobs:stock_job", kw, threads=job.threads)
                jobs.setdefault(key, job)
        self._jobs("train", list(jobs.values()))

    def _arm_archs(self, p: DeviceProfile) -> dict[str, str]:
        chosen = self.state.jobs[f"arms/{p.name}"]
        stock = {f: s["arch"] for f, s in self._stock(p).items() if "arch" in s}
        return {"pick": self.run_jobs[f"select/{p.name}"]["arch"], **{a: chosen[a]["arch"] for a in ARMS[1:]}, **stock}

    def _archs(self) -> list[str]:
        """Every arch to train, once each: one shared by two arms or devices is trained once per seed."""
        return list(dict.fromkeys(a for p in self.profiles for a in self._arm_archs(p).values()))

    # -- results ----------------------------------------------------------------------------
    def results(self) -> dict[str, Any]:
        from edgenas.bench.stats import mean_std, paired_difference

        devices = []
        for p in self.profiles:
            archs, chosen, stock = self._arm_archs(p), self.state.jobs[f"arms/{p.name}"], self._stock(p)
            arms: dict[str, Any] = {}
            for arm, arch in archs.items():
                accs = [self.state.jobs[f"train/{arch_key(arch)}/seed{k}"]["test_accuracy"] for k in range(self.seeds)]
                mean, std = mean_std(accs)
                if arm == "pick":
                    sel = self.run_jobs[f"select/{p.name}"]
                    how = {"cost": sel["cost"], "source": sel["source"]}
                elif arm in stock:
                    first = self.state.jobs[f"train/{arch_key(arch)}/seed0"]
                    how = {k: stock[arm][k] for k in ("family", "multiplier", "cost")}
                    how["capacity_code"] = first.get("capacity_code")
                else:
                    how = {"cost": chosen[arm]["cost"], "tries": chosen[arm]["tries"]}
                arms[arm] = {
                    "arch": arch,
                    **how,
                    "same_as": [o for o, a in archs.items() if a == arch and o != arm],
                    "test_accuracy": accs,
                    "mean": mean,
                    "std": std,
                    "n": len(accs),
                }
            pick = arms["pick"]["test_accuracy"]
            diffs = {
                f"pick-{arm}": paired_difference(pick, a["test_accuracy"]).as_json()
                for arm, a in arms.items()
                if arm != "pick"
            }
            devices.append(
                {
                    "device": p.name,
                    "budgets": dict(p.budgets.items()),
                    "static_fit": chosen["static_fit"],
                    "arms": arms,
                    "differences": diffs,
                    "absent": {f: s["absent"] for f, s in stock.items() if "absent" in s},
                }
            )
        # every student job differs only in arch, seed and folder (a stock one: in the network it builds)
        example = next(j for j in self.train_jobs.values() if j.fn.endswith(":train_job")).kwargs
        return {
            "schema_version": SCHEMA_VERSION,
            "command": "bench e2e",
            "run": str(self.run_dir.path),
            "name": self.cfg.name,
            "seeds": self.seeds,
            "stock": list(self.stock),
            "train_seeds": [train_seed(self.cfg.seed, k) for k in range(self.seeds)],
            "protocol": {
                "how": example["command"],
                "teacher": example["teacher"],
                "kd": example["kd"],
                "train": {k: v for k, v in example["train"].items() if k != "seed"},
                "dataset": example["dataset"],
                "width": example["width"],
                "cells": example["cells"],
                "space": self.cfg.space.name,
            },
            "units": "test_accuracy, mean, std and the differences are fractions of the test set (0.01 = 1 point)",
            "pool": self.state.pool,
            "notes": [
                "pick: the run's selected arch; largest: the most FLOPs inside every budget (static costs exact "
                "over the pool, latency measured the profile's way walking down from the largest); random: a "
                "seeded uniform draw from the pool inside every budget",
                "mbv3-small, mbv2: the stock MobileNet at the largest width multiplier on a 0.05 grid whose exact "
                "cost (latency measured with onnxruntime under the profile's settings) meets every budget, as "
                "`edgenas baseline` picks it; a device no multiplier fits lists the family under `absent`. "
                "Distilled from a FiLM-conditioned teacher, it is given the capacity code of its FLOPs and params "
                "on the students' scale (clamped to [-1, 1])",
                "every arm is trained fresh for every seed (the run's own student is not reused); seed k uses the "
                "same training seed in every arm, so differences are paired by seed (Student's t, 95%)",
                "an arch shared by two arms (same_as) is trained once per seed and its accuracies are shared: "
                "their difference is 0 by construction",
            ],
            "devices": devices,
        }

    def run(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.run_dir.event("e2e_start", seeds=self.seeds, executor=self.ex.name, workers=self.ex.workers)
        pool = self._pool()  # checked on every session: a resume must cost the same pool
        self.choose_arms(self.cost_pool(pool) if self._arms_missing() else {})
        self.fit_stock()
        self.train()
        res = self.results()
        atomic_write_json(self.run_dir.path / "e2e.json", res)
        from edgenas.report.run_report import write_report

        write_report(self.run_dir.path)
        self.run_dir.event("e2e_done", seconds=round(time.perf_counter() - t0, 2))
        return res

    def _arms_missing(self) -> bool:
        return any(f"arms/{p.name}" not in self.state.jobs for p in self.profiles)


def _describe_pool(pool: dict[str, Any]) -> str:
    if pool["kind"] == "enumerated":
        return f"the whole space ({pool['archs']} archs)"
    return f"a seeded sample of {pool['requested']} archs"
