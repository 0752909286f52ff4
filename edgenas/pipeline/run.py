"""`edgenas run CONFIG`: dataset + devices in, one trained, exported, verified model per device out.

Stages: screen (AZ-NAS, all devices at once) → search per device (DCA-NAS, or the top
screened arch) → select (the first candidate whose exact cost, measured the profile's
way, meets every budget) → one teacher → one distilled student per device → ONNX export
and latency (measured here; predicted too for devices with a lookup table) → budget
verification → report. Independent jobs go through `edgenas.exec` (local processes or
Ray). Every finished job is recorded in `state.json` at once and every job resumes from
its own checkpoints, so `edgenas run CONFIG --resume RUN` after any interruption —
`kill -9` included — loses at most the epoch that was running.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path
from typing import Any

from edgenas.core.atomic import atomic_write_json
from edgenas.core.cost import Cost
from edgenas.core.device import DeviceProfile
from edgenas.core.errors import Interrupted, ResumeError, UserError
from edgenas.core.progress import progress_bar
from edgenas.core.rundir import RunDir
from edgenas.core.space import NetShape
from edgenas.distill.generic_teacher import LEGACY
from edgenas.distill.teacher_net import default_teacher_arch
from edgenas.exec.executor import Executor, Job, make_executor, run_all, threads_per_job
from edgenas.pipeline.config import RunConfig, load_run_config, recorded_options
from edgenas.search.methods import METHODS, SearchMethod, aimed_at, search_job_key

STAGES = ("screen", "search", "select", "teacher", "distill", "export", "report")


def _check_dicts(checks: list[Any]) -> list[dict[str, Any]]:
    return [{"budget": c.budget, "limit": c.limit, "value": c.value, "passed": c.passed} for c in checks]


# Job-result fields that hold paths: stored relative to the run folder, so a run folder can
# be moved (or mounted elsewhere on another node) and resumed.
PATH_FIELDS = ("run_dir", "folder", "teacher")


def _rebase(obj: Any, convert: Any) -> Any:
    """`obj` with every path field (at any depth) passed through `convert`."""
    if isinstance(obj, dict):
        return {
            k: convert(v) if k in PATH_FIELDS and isinstance(v, str) else _rebase(v, convert) for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_rebase(v, convert) for v in obj]
    return obj


class PipelineState:
    """`state.json`: finished jobs' results and the seconds spent in each stage (all sessions).

    In memory the paths of job results are absolute (where the run folder is now); on disk
    those inside the run folder are relative to it (older runs' absolute paths are kept).
    """

    def __init__(self, run: RunDir) -> None:
        self.path = run.file("state.json")
        self.root = run.path.resolve()
        data = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.jobs: dict[str, Any] = _rebase(data.get("jobs", {}), self._absolute)
        self.seconds: dict[str, float] = data.get("seconds", {})
        self.sessions: int = data.get("sessions", 0)

    def _absolute(self, path: str) -> str:
        return str(self.root / path) if not os.path.isabs(path) else path

    def _relative(self, path: str) -> str:
        p = Path(path)
        return str(p.relative_to(self.root)) if p.is_absolute() and p.is_relative_to(self.root) else path

    def save(self) -> None:
        jobs = _rebase(self.jobs, self._relative)
        atomic_write_json(self.path, {"jobs": jobs, "seconds": self.seconds, "sessions": self.sessions})

    def record(self, key: str, result: Any) -> None:
        self.jobs[key] = result
        self.save()

    def add_seconds(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + seconds, 2)
        self.save()


class _Lock:
    """One live process per run folder: a resume while the run still runs is refused."""

    def __init__(self, run: RunDir) -> None:
        self.path = run.path / "run.lock"

    def __enter__(self) -> _Lock:
        if self.path.is_file():
            try:
                pid = int(self.path.read_text().strip() or 0)
            except ValueError:
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise ResumeError(f"{self.path.parent} is still being run by process {pid}; stop it or wait")
        self.path.write_text(str(os.getpid()))
        return self

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_pipeline(
    config_file: str | Path | None = None,
    *,
    example: str | None = None,
    resume: str | Path | None = None,
    run_dir: str | Path | None = None,
    executor: str | None = None,
    address: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    compute: str = "auto",
    gpus_per_job: float | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run (or resume) the whole pipeline for a config file; returns `results.json`'s content.

    Give `config_file`, or `example`: the name of a config shipped in `edgenas/configs`
    (`"quick"`: the short demo). `executor`, `address`, `workers`, `threads` and `gpus_per_job` override the
    config's `executor` section (they change where and how fast jobs run, not which jobs; a
    resume may change them, though another thread count can move the last digits of a float
    result).
    """
    if (config_file is None) == (example is None):
        raise UserError(
            "give a run config file or --example NAME, not both"
            if example is not None
            else "edgenas run needs a config file (e.g. examples/fashion_three_devices.yaml) or --example NAME"
        )
    if example is not None:
        from edgenas.configs import example_config

        config_file = example_config(example)
    cfg, profiles = load_run_config(config_file)
    if threads is not None:
        cfg.executor.threads = threads
    resolved = {
        "config_file": str(config_file),
        "options": recorded_options(cfg),
        "profiles": [p.model_dump(mode="json") for p in profiles],
    }
    if resume is not None and run_dir is not None:
        raise UserError("give --resume RUN or --run-dir DIR, not both")
    ex_cfg = cfg.executor
    ex = make_executor(  # a missing Ray or a bad address fails before a run folder is made
        executor or ex_cfg.kind,
        workers=workers or ex_cfg.workers,
        address=address if address is not None else ex_cfg.address,
        gpus_per_job=gpus_per_job if gpus_per_job is not None else ex_cfg.gpus_per_job,
        compute=compute,
        nice=ex_cfg.nice,
    )
    try:
        run = _open_run(resume, run_dir, resolved, config_file)
    except BaseException:
        ex.close()
        raise

    try:
        with _Lock(run):
            return Pipeline(cfg, profiles, run, ex, compute=compute, quiet=quiet).run()
    except KeyboardInterrupt:
        run.event("interrupted")
        source = ["--example", example] if example is not None else [config_file]
        again = shlex.join(["edgenas", "run", *map(str, source), "--resume", str(run.path)])
        raise Interrupted(f"finished work is saved in {run.path}; continue with: {again}") from None
    finally:
        ex.close()


def _open_run(
    resume: str | Path | None, run_dir: str | Path | None, resolved: dict[str, Any], config_file: str | Path
) -> RunDir:
    """A new run folder, or the one to resume (which must have been started with the same config)."""
    if resume is None:
        run = RunDir.create("run", run_dir)
        run.write_config({"command": "run", **resolved})
        return run
    run = RunDir.open_existing(resume, "run")
    stored = run.read_config()
    for key in ("options", "profiles"):
        if stored.get(key) != resolved[key]:
            raise ResumeError(
                f"--resume {resume}: {config_file} differs from the config that run was started with "
                f"({_first_difference(stored.get(key), resolved[key], key)}); resume with the same config"
            )
    return run


def _first_difference(a: Any, b: Any, path: str) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{path}.{i}")
    return f"{path}: {a!r} then, {b!r} now"


class Pipeline:
    """One run of the stages over a run folder; finished jobs are skipped."""

    def __init__(
        self, cfg: RunConfig, profiles: list[DeviceProfile], run: RunDir, ex: Executor, *, compute: str, quiet: bool
    ) -> None:
        from edgenas.data import dataset_info

        self.cfg, self.profiles, self.run_dir, self.ex = cfg, profiles, run, ex
        self.compute, self.quiet = compute, quiet
        self.state = PipelineState(run)
        d = cfg.dataset
        self.dataset = {
            "name": d.name,
            "data_dir": d.data_dir,
            "subset": d.subset,
            "val_fraction": d.val_fraction,
            "resize": d.resize,
            "in_memory": d.in_memory,
            "skip_bad": d.skip_bad,
            "workers": d.workers,
        }
        info = dataset_info(d.name, d.data_dir, resize=d.resize)
        self.shape = NetShape.for_data(info, cfg.space.width, cfg.space.cells)
        # parallel jobs share the cores; a job running alone (screen, teacher) gets them all
        self.threads = cfg.executor.threads or threads_per_job(ex.workers)
        self.solo_threads = cfg.executor.threads or (os.cpu_count() or 1)

    # -- helpers ------------------------------------------------------------------------
    def _jobs(self, stage: str, jobs: list[Job]) -> None:
        """Run the jobs not yet finished, recording each result the moment it arrives."""
        todo = [j for j in jobs if j.key not in self.state.jobs]
        if not todo:
            return
        t0 = time.perf_counter()
        self.run_dir.event("stage_start", stage=stage, jobs=[j.key for j in todo], executor=self.ex.name)
        with progress_bar(self.quiet) as bar:
            task = bar.add_task(stage, total=len(jobs), completed=len(jobs) - len(todo), status="")

            def done(key: str, result: Any) -> None:
                self.state.record(key, result)
                self.run_dir.event("job_done", key=key)
                bar.update(task, advance=1, status=key)

            try:
                run_all(self.ex, todo, done)
            finally:
                self.state.add_seconds(stage, time.perf_counter() - t0)

    def _folder(self, *parts: str) -> str:
        # absolute: a Ray worker need not share this process's working directory
        return str(self.run_dir.path.resolve().joinpath(*parts))

    def _in_parent(self, stage: str, key: str, fn: Any) -> Any:
        """A step run here (not through the executor), recorded like a job."""
        if key not in self.state.jobs:
            t0 = time.perf_counter()
            self.state.record(key, fn())
            self.state.add_seconds(stage, time.perf_counter() - t0)
        return self.state.jobs[key]

    # -- stages -------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.state.sessions += 1
        self.state.save()
        self.run_dir.event("start", session=self.state.sessions, executor=self.ex.name, workers=self.ex.workers)
        self.screen()
        if aimed_at("teacher", self._methods()):
            self.teacher()  # DNAD imitates the teacher while it searches
        self.search()
        self.select()
        self.teacher()
        self.distill()
        self.export()
        return self.report()

    def screen(self) -> None:
        c = self.cfg
        self._jobs(
            "screen",
            [
                Job(
                    "screen",
                    "edgenas.pipeline.jobs:screen_job",
                    {
                        "folder": self._folder("screen"),
                        "profiles": [p.model_dump(mode="json") for p in self.profiles],
                        "dataset": self.dataset,
                        "space": c.space.model_dump(),
                        "screen": c.screen.model_dump(),
                        "seed": c.seed,
                        "compute": self.compute,
                    },
                    threads=self.solo_threads,
                )
            ],
        )

    def _methods(self) -> set[str]:
        return {self.cfg.method_for(i) for i in range(len(self.profiles))}

    def _teacher_file(self) -> str:
        return str(Path(self.state.jobs["teacher"]["run_dir"]) / "model.pt")

    def search(self) -> None:
        """A search per device for device-aimed methods (DCA-NAS), one for all for teacher-aimed ones (DNAD)."""
        c = self.cfg
        jobs = [
            self._search_job(METHODS.get(c.method_for(i)), p.name, profile=p.model_dump(mode="json"))
            for i, p in enumerate(self.profiles)
            if aimed_at("device", [c.method_for(i)])
        ]
        jobs += [
            self._search_job(METHODS.get(m), m, teacher=self._teacher_file())
            for m in aimed_at("teacher", sorted(self._methods()))
        ]
        self._jobs("search", jobs)

    def _search_job(self, spec: SearchMethod, name: str, **aim: Any) -> Job:
        c = self.cfg
        return Job(
            search_job_key(spec, name),
            "edgenas.pipeline.jobs:search_job",
            {
                "folder": self._folder("search", name),
                "method": spec.name,
                **aim,
                "dataset": self.dataset,
                "space": c.space.model_dump(),
                "search": c.search.model_dump(),
                "seed": c.seed,
                "compute": self.compute,
            },
            threads=self.threads,
        )

    def _searched(self, device: str, method: str) -> list[str]:
        """The search's candidates for a device, best first (none for `screen`)."""
        if method not in METHODS:
            return []
        spec = METHODS.get(method)
        return spec.candidates(self.state.jobs[search_job_key(spec, device)])

    def select(self) -> None:
        """Per device, the first candidate (searched, then screened) that meets every budget, measured."""
        from edgenas.cost.budget_check import check_arch_on_device
        from edgenas.spaces import get_space

        space = get_space(self.cfg.space.name)
        screened = self.state.jobs["screen"]
        for i, p in enumerate(self.profiles):
            method = self.cfg.method_for(i)

            def pick(p: DeviceProfile = p, method: str = method) -> dict[str, Any]:
                candidates = [(a, method) for a in self._searched(p.name, method)]
                candidates += [(a, "screen") for a in screened[p.name]["ranked"]]
                tried, seen = [], set()
                for arch, source in candidates:
                    if arch in seen:
                        continue
                    seen.add(arch)
                    # static costs first: latency (an ONNX export and timing) only for archs that pass them
                    cost, checks = check_arch_on_device(space, arch, self.shape, p, latency=False)
                    if not [c for c in checks if c.passed is False]:
                        cost, checks = check_arch_on_device(space, arch, self.shape, p)
                    failed = [c.budget for c in checks if c.passed is False]
                    tried.append({"arch": arch, "source": source, "failed": failed})
                    if not failed:
                        return {"arch": arch, "source": source, "cost": cost.to_dict(), "tried": tried}
                return {"arch": None, "source": None, "cost": None, "tried": tried}

            chosen = self._in_parent("select", f"select/{p.name}", pick)
            if chosen["arch"] is None:
                raise UserError(
                    f"no candidate meets every budget of {p.name!r} ({len(chosen['tried'])} tried); loosen its "
                    "budgets, screen more (screen.n) or use a smaller space.width"
                )

    def teacher(self) -> None:
        t = self.cfg.teacher
        if t.kind == "none":
            return
        arch = t.arch or default_teacher_arch(self.cfg.space.name)
        generic = None
        if t.kind == "generic":
            generic = {"student_width": self.cfg.space.width, "student_cells": self.cfg.space.cells}
            # without teacher.generic: the first generic teacher (runs recorded before issue 22 resume unchanged)
            generic.update(t.generic or {**LEGACY, "mu": t.mu})
        self._jobs(
            "teacher",
            [
                Job(
                    "teacher",
                    "edgenas.pipeline.jobs:train_job",
                    {
                        "folder": self._folder("teacher"),
                        "arch": arch,
                        "command": "teacher",
                        "dataset": self.dataset,
                        "width": t.width,
                        "cells": t.cells,
                        "train": {**self._train_options(), "epochs": t.epochs},
                        "compute": self.compute,
                        "generic": generic,
                        "space": self.cfg.space.name,
                    },
                    threads=self.solo_threads,
                )
            ],
        )
        self._in_parent("teacher", "teacher/cost", lambda: self._teacher_cost(arch))

    def _teacher_cost(self, arch: str) -> dict[str, Any]:
        """Params and FLOPs of the teacher's network (the FiLM of a generic teacher is a few hundred params)."""
        from edgenas.cost.measure import measure_cost
        from edgenas.spaces import get_space

        t = self.cfg.teacher
        shape = NetShape(t.width, t.cells, self.shape.in_channels, self.shape.resolution, self.shape.num_classes)
        space = get_space(self.cfg.space.name)
        return measure_cost(space.build(space.parse(arch), shape), shape.input_shape).to_dict()

    def _train_options(self) -> dict[str, Any]:
        tr = self.cfg.train
        return {
            "epochs": tr.epochs,
            "batch_size": tr.batch_size,
            "lr": tr.lr,
            "weight_decay": tr.weight_decay,
            "schedule": tr.schedule,
            "seed": self.cfg.seed,
        }

    def student_job(self, key: str, folder: str, arch: str, *, seed: int | None = None) -> Job:
        """The job that trains `arch` as this run trains its students: distilled from the run's
        teacher (alone when it has none) with `cfg.train`, into `folder`; `seed` replaces the run's
        training seed (`edgenas bench e2e` trains the same protocol over several seeds)."""
        teacher = self._teacher_file() if self.cfg.teacher.kind != "none" else None
        kd = {"kd_weight": self.cfg.train.kd_weight, "temperature": self.cfg.train.temperature}
        train = self._train_options()
        if seed is not None:
            train["seed"] = seed
        return Job(
            key,
            "edgenas.pipeline.jobs:train_job",
            {
                "folder": folder,
                "arch": arch,
                "command": "distill" if teacher else "train",
                "dataset": self.dataset,
                "width": self.cfg.space.width,
                "cells": self.cfg.space.cells,
                "train": train,
                "compute": self.compute,
                "teacher": teacher,
                "kd": kd if teacher else None,
                "space": self.cfg.space.name,
            },
            threads=self.threads,
        )

    def distill(self) -> None:
        jobs = [
            self.student_job(
                f"distill/{p.name}", self._folder("distill", p.name), self.state.jobs[f"select/{p.name}"]["arch"]
            )
            for p in self.profiles
        ]
        self._jobs("distill", jobs)

    def export(self) -> None:
        """Export each student to ONNX here, one at a time (latency is timed with nothing else running)."""
        for p in self.profiles:
            self._in_parent("export", f"export/{p.name}", lambda p=p: self._export_one(p))

    def _export_one(self, p: DeviceProfile) -> dict[str, Any]:
        """ONNX file, output check, latency and budget checks of one device's student. An INT8 device
        (`precision: int8`) also gets its INT8 file (`edgenas.export.int8`), and every budget is
        checked on that; the float32 figures and checks are kept beside them for the report."""
        from edgenas.cost.lut import latency_table_for
        from edgenas.export.export_model import export_and_measure
        from edgenas.train.model_file import load_model_file

        trained = self.state.jobs[f"distill/{p.name}"]
        model, blob = load_model_file(Path(trained["run_dir"]) / "model.pt")
        spec = p.latency
        out = self.run_dir.file(f"export/{p.name}.onnx")
        repeats = max(spec.repeats, 50)
        exported = export_and_measure(
            model, self.shape.input_shape, out, threads=spec.threads, warmup=spec.warmup, repeats=repeats
        )
        measured_ms = exported["latency"]["onnxruntime"]["median_ms"]
        table = latency_table_for(p)
        predicted_ms = table.predict_ms(model.arch, model.shape) if table is not None else None
        # an INT8 profile's table holds INT8 ops (`latency_table_for` refuses another): it predicts
        # the INT8 file's latency, not this float file's, which is then checked as measured here
        float_from_table = table is not None and p.precision != "int8"
        cost = Cost(
            **{
                **exported["cost"],
                "latency_ms": predicted_ms if float_from_table else measured_ms,
                "model_bytes": out.stat().st_size,
            }
        )
        fp32_cost = cost
        fp32_checks = p.model_copy(update={"precision": "fp32"}).check(fp32_cost)
        checks, int8 = fp32_checks, None
        if p.precision == "int8":
            from edgenas.export.export_model import training_data
            from edgenas.export.int8 import int8_export

            data = training_data(
                Path(trained["run_dir"]),
                blob,
                dataset=self.cfg.dataset.name,
                data_dir=self.cfg.dataset.data_dir,
                resize=self.cfg.dataset.resize,
            )
            q = int8_export(
                model, data, out.parent, stem=p.name, fp32_path=out, seed=self.cfg.seed,
                threads=spec.threads, warmup=spec.warmup, repeats=repeats,
            )  # fmt: skip
            # the INT8 file's latency: the profile's table prediction when it has one (as `select`
            # checked it), else measured here; the time measured here is reported beside it
            cost = Cost(**{**q["int8"]["cost"], **({"latency_ms": predicted_ms} if table is not None else {})})
            checks = p.check(cost)
            int8 = {
                "onnx": str(Path(q["int8"]["file"]).relative_to(self.run_dir.path)),
                "quantization": q["quantization"],
                "fp32": {k: q["fp32"][k] for k in ("test_accuracy", "model_bytes", "peak_memory_bytes", "latency_ms")},
                "int8": {k: q["int8"][k] for k in ("test_accuracy", "model_bytes", "peak_memory_bytes", "latency_ms")},
                **{k: q[k] for k in ("accuracy_drop_points", "size_ratio", "latency_ratio")},
                "fp32_cost": fp32_cost.to_dict(),
                "fp32_checks": _check_dicts(fp32_checks),
                "fp32_all_pass": all(c.passed is not False for c in fp32_checks),
            }
        return {
            "onnx": str(out.relative_to(self.run_dir.path)),
            "max_abs_diff": exported["max_abs_diff"],
            "latency_measured_ms": int8["int8"]["latency_ms"] if int8 is not None else measured_ms,
            "latency_p90_ms": exported["latency"]["onnxruntime"].get("p90_ms"),
            "latency_predicted_ms": predicted_ms,
            "latency_source": "table" if table is not None else "measured",
            "threads": spec.threads,
            "precision": p.precision,
            "cost": cost.to_dict(),
            "checks": _check_dicts(checks),
            "all_pass": all(c.passed is not False for c in checks),
            **({"int8": int8} if int8 is not None else {}),
        }

    def report(self) -> dict[str, Any]:
        from edgenas.pipeline.results import collect_results
        from edgenas.report.run_report import write_report

        t0 = time.perf_counter()
        results = collect_results(self.cfg, self.profiles, self.state)
        self.run_dir.write_results(results)
        write_report(self.run_dir.path)
        self.state.add_seconds("report", time.perf_counter() - t0)
        results = collect_results(self.cfg, self.profiles, self.state)  # with the report's own seconds
        self.run_dir.write_results(results)
        self.run_dir.event("done", all_pass=results["all_pass"])
        results["run_dir"] = str(self.run_dir.path)
        return results
