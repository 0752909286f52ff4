"""`edgenas run`: config validation, executors, the whole pipeline, and a real kill -9 / resume."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgenas.cli import run as cli
from edgenas.core.errors import ConfigError, ResumeError
from edgenas.exec.executor import Job, LocalExecutor, make_executor
from edgenas.pipeline.config import load_run_config
from edgenas.pipeline.run import run_pipeline

FASHION = Path("/usr/share/datasets/fashion-mnist")
REPO = Path(__file__).resolve().parents[1]
needs_fashion = pytest.mark.skipif(not FASHION.is_dir(), reason="Fashion-MNIST is not installed")


def tiny_config(tmp_path: Path, **override) -> Path:
    """A two-device config small enough to run end to end in well under a minute."""
    cfg = {
        "name": "tiny",
        "seed": 0,
        "dataset": {"name": "fashion-mnist", "subset": 1500, "val_fraction": 0.2},
        "space": {"width": 4, "cells": 1},
        "devices": [
            {"name": "small", "budgets": {"max_params": "6k"}, "method": "dca"},
            {"name": "big", "budgets": {"max_flops": "3M", "max_latency_ms": 20}, "method": "screen"},
        ],
        "screen": {"n": 12, "top": 1, "batch": 16},
        "search": {
            "subset": 400,
            "dca": {"epochs": 2, "warmup_epochs": 1, "batch_size": 64, "search_width": 4},
        },
        "teacher": {"kind": "generic", "width": 4, "epochs": 1},
        "train": {"epochs": 2, "batch_size": 64},
        "executor": {"workers": 2, "threads": 1},  # one thread a job: robust to a busy CPU
    }
    for key, value in override.items():
        cfg[key] = value
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# -- config ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "devices:\n  - name: a\n    budgets: {max_params: 10k}\nsearch:\n  methd: dca\n",
            ":5: search.methd: unknown key",
        ),
        (
            "devices:\n  - name: a\n    budgets: {max_params: 10k}\n    method: foo\n",
            ":4: devices.0.method: Value error, 'foo' is not one of screen, dca",
        ),
        ("devices:\n  - profile: nope.yaml\n", ":2: devices.0.profile:"),
        ("devices: []\n", ":1: devices: List should have at least 1 item"),
        ("devices:\n  - name: a\n", ":2: devices.0: device 'a' sets no budget"),
        (
            "devices:\n  - name: a\n    budgets: {max_params: 1k}\n  - name: a\n    budgets: {max_flops: 1M}\n",
            ":4: devices.1: device name 'a' is used twice",
        ),
        ("devices:\n  - profile: x.yaml\n    name: a\n", ":2: devices.0: Value error, give either"),
        ("devices:\n  - name: a\n    budgets: {max_params: 1k}\ndataset: {name: imagenet}\n", ":4: dataset.name"),
        ("devices:\n  - name: a\n    budgets: {max_params: lots}\n", ":3: devices.0.budgets.max_params"),
        ("devices: [\n", ": not valid YAML"),
        (
            "devices:\n  - name: a\n    budgets: {max_params: 1k}\ndataset: {resolution: 32, resize: 28}\n",
            ":4: dataset: Value error, resolution 32 and resize 28 differ",
        ),
        (
            "devices:\n  - name: a\n    budgets: {max_params: 1k}\ndataset:\n  in_memory: sometimes\n",
            ":5: dataset.in_memory",
        ),
        (
            "devices:\n  - name: a\n    budgets: {max_params: 1k}\nexecutor: {gpus_per_job: -1}\n",
            ":4: executor.gpus_per_job",
        ),
        (
            "devices:\n  - name: a\n    budgets: {max_params: 1M}\n"
            "teacher:\n  kind: generic\n  generic: {conditioning: both}\n",
            ":6: teacher.generic.conditioning: Input should be 'film' or 'none'",
        ),
        (
            "devices:\n  - name: a\n    budgets: {max_params: 1M}\nteacher:\n  kind: plain\n  generic: {mu: 1}\n",
            ":6: teacher.generic: options of a generic teacher, but teacher.kind is plain",
        ),
    ],
)
def test_bad_configs_name_the_line_and_key(tmp_path: Path, text: str, message: str, capsys) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_run_config(path)
    assert message in str(err.value)
    assert cli(["run", str(path)]) == 2  # and the CLI prints it in one line, no run folder
    out = capsys.readouterr().err.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("edgenas: error: ") and message in out[0]
    assert not (tmp_path / "runs").exists()


def test_resolution_and_streaming_options_resolve_and_stay_out_of_old_runs_options(tmp_path: Path) -> None:
    from edgenas.pipeline.config import recorded_options

    cfg, _ = load_run_config(tiny_config(tmp_path, dataset={"name": "fashion-mnist", "resolution": 32}))
    assert cfg.dataset.resize == 32 and cfg.dataset.in_memory == "auto"
    options = recorded_options(cfg)
    assert options["dataset"]["resize"] == 32
    assert not {"resolution", "in_memory", "skip_bad", "workers"} & set(options["dataset"])  # defaults: as before
    cfg, _ = load_run_config(tiny_config(tmp_path, dataset={"name": "fashion-mnist", "in_memory": False}))
    assert recorded_options(cfg)["dataset"]["in_memory"] is False


def test_generic_teacher_options_stay_out_of_old_runs_options_and_reach_the_teacher(tmp_path: Path) -> None:
    from edgenas.pipeline.config import recorded_options

    cfg, _ = load_run_config(tiny_config(tmp_path))
    assert "generic" not in recorded_options(cfg)["teacher"]  # empty: runs recorded before it resume
    teacher = {"kind": "generic", "width": 4, "epochs": 1, "generic": {"conditioning": "none"}}
    cfg, _ = load_run_config(tiny_config(tmp_path, teacher=teacher))
    assert recorded_options(cfg)["teacher"]["generic"] == {"conditioning": "none"}


def test_example_config_is_valid_and_profiles_resolve_against_its_folder() -> None:
    cfg, profiles = load_run_config(REPO / "examples" / "fashion_three_devices.yaml")
    assert [p.name for p in profiles] == ["mcu", "phone", "gateway"]
    assert [cfg.method_for(i) for i in range(3)] == ["screen", "dca", "dca"]
    assert profiles[0].budgets.max_peak_memory_bytes == 64 * 1024 and profiles[0].precision == "int8"
    assert profiles[0].search_budgets().max_peak_memory_bytes == 256 * 1024  # as float32 activations


# -- executors ------------------------------------------------------------------------------
def test_local_executor_runs_jobs_in_parallel_processes_with_pinned_threads() -> None:
    jobs = [Job(f"j{s}", "pipeline_jobs:tiny_training", {"seed": s}, threads=1) for s in range(3)]
    ex = LocalExecutor(workers=2)
    got = dict(ex.run(jobs))
    assert sorted(got) == ["j0", "j1", "j2"]
    assert {r["threads"] for r in got.values()} == {1}
    assert os.getpid() not in {r["pid"] for r in got.values()}
    inline = dict(LocalExecutor(workers=1).run(jobs))  # same numbers in this process
    assert {k: v["checksum"] for k, v in inline.items()} == {k: v["checksum"] for k, v in got.items()}
    assert got["j0"]["checksum"] != got["j1"]["checksum"]  # seeds matter: the comparison can fail


def test_a_user_error_in_a_job_reaches_the_caller_as_itself() -> None:
    with pytest.raises(ConfigError, match="value 3 is not allowed"):
        list(
            LocalExecutor(workers=2).run(
                [Job("a", "pipeline_jobs:bad_input", {"value": 3}), Job("b", "pipeline_jobs:bad_input", {"value": 3})]
            )
        )


def test_unknown_executor_and_address_without_ray_are_user_errors() -> None:
    with pytest.raises(ConfigError, match="choose one of local, ray"):
        make_executor("dask")
    with pytest.raises(ConfigError, match="--address is for --executor ray"):
        make_executor("local", address="10.0.0.1:6379")


@pytest.mark.slow  # ~18 s: Ray start-up; tests/test_exec_ray.py keeps Ray jobs in CI
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray (the optional extra) is not installed")
def test_ray_executor_gives_the_same_results_as_local_processes() -> None:
    jobs = [Job(f"j{s}", "pipeline_jobs:tiny_training", {"seed": s}, threads=1) for s in range(3)]
    local = dict(LocalExecutor(workers=2).run(jobs))
    ex = make_executor("ray", workers=2)
    try:
        remote = dict(ex.run(jobs))
        with pytest.raises(ConfigError, match="value 5 is not allowed"):
            list(ex.run([Job("bad", "pipeline_jobs:bad_input", {"value": 5})]))
    finally:
        ex.close()
    assert {k: (v["loss"], v["checksum"]) for k, v in remote.items()} == {
        k: (v["loss"], v["checksum"]) for k, v in local.items()
    }


# -- the pipeline ---------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text().split()
        return stat[2] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


@needs_fashion
def test_kill_9_mid_distill_then_resume_of_the_moved_folder_finishes_losing_at_most_an_epoch(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "edgenas.cli", "run", str(config), "--run-dir", str(run), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoints = [run / "distill" / d / "checkpoint.pt" for d in ("small", "big")]
    deadline = time.time() + 400
    while not any(c.exists() for c in checkpoints):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "no distill epoch finished in time"
        time.sleep(0.05)
    workers = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)  # no clean-up of any kind
    proc.wait()
    time.sleep(1.0)
    assert not [w for w in workers if _alive(w)], "worker processes outlived the killed run"
    state = json.loads((run / "state.json").read_text())
    assert "screen" in state["jobs"] and "teacher" in state["jobs"]
    assert not (run / "results.json").exists()
    assert str(run) not in (run / "state.json").read_text()  # paths are stored relative to the run

    # the run folder moves (another mount, another node); the old place is gone
    old, run = run, tmp_path / "elsewhere" / "moved-run"
    run.parent.mkdir()
    shutil.move(old, run)

    # a different config is refused; the same one resumes
    (tmp_path / "other").mkdir()
    other = tiny_config(tmp_path / "other", seed=1)
    with pytest.raises(ResumeError, match=r"options\.seed: 0 then, 1 now"):
        run_pipeline(other, resume=run, quiet=True)
    res = run_pipeline(config, resume=run, quiet=True)

    assert res["all_pass"] and res["sessions"] == 2
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    done = [e["key"] for e in events if e["event"] == "job_done"]
    assert done.count("screen") == 1 and done.count("teacher") == 1  # finished work is not redone
    resumed = []
    for d in ("small", "big"):
        starts = [
            json.loads(line)
            for line in (run / "distill" / d / "events.jsonl").read_text().splitlines()
            if '"start"' in line
        ]
        resumed += [s["resumed_from_epoch"] for s in starts[1:]]
    assert 1 in resumed  # the interrupted student went on from its finished epoch
    for d in res["devices"]:
        assert (run / d["onnx"]).is_file() and d["max_abs_diff"] < 1e-4
        assert {c["budget"] for c in d["checks"]} <= {"max_params", "max_flops", "max_latency_ms"}
    small = next(d for d in res["devices"] if d["device"] == "small")
    assert small["search"] is not None and small["cost"]["params"] <= 6000
    for name in ("report.md", "report.html", "pareto.png", "stages.png"):
        assert (run / name).stat().st_size > 0
    html = (run / "report.html").read_text()
    assert "data:image/png;base64," in html and "small" in html
    assert set(res["stage_seconds"]) >= {"screen", "search", "select", "teacher", "distill", "export"}
    assert not old.exists() and str(old) not in (run / "state.json").read_text()

    # the report is rebuilt from results.json alone
    (run / "report.md").unlink()
    assert cli(["report", str(run)]) == 0
    assert "| small |" in (run / "report.md").read_text()


@pytest.mark.slow  # the suite stays under 6 min; faster cousins run in CI
@needs_fashion
def test_dnad_searches_once_for_all_devices_after_the_teacher(tmp_path: Path) -> None:
    devices = [
        {"name": "small", "budgets": {"max_params": "6k"}},
        {"name": "big", "budgets": {"max_flops": "3M"}},
    ]
    search = {
        "method": "dnad",
        "subset": 400,
        "dnad": {"epochs": 3, "warmup_epochs": 1, "batch_size": 64, "search_width": 4},
    }
    config = tiny_config(tmp_path, devices=devices, search=search, train={"epochs": 1, "batch_size": 64})
    res = run_pipeline(config, run_dir=tmp_path / "run", quiet=True)
    events = [
        json.loads(line)["stage"]
        for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()
        if '"stage_start"' in line
    ]
    assert events.index("teacher") < events.index("search")  # DNAD imitates the teacher
    assert res["all_pass"]
    for d in res["devices"]:
        assert d["method"] == "dnad" and d["search"]["method"] == "dnad" and d["search"]["snapshots"] >= 1
        assert d["candidates_tried"][0]["source"] == "dnad"  # DNAD's snapshots are tried first
    assert sorted(p.name for p in (tmp_path / "run" / "search").iterdir()) == ["dnad"]


def test_dnad_without_a_teacher_is_refused_at_load(tmp_path: Path) -> None:
    devices = [{"name": "small", "budgets": {"max_params": "6k"}}]
    config = tiny_config(tmp_path, devices=devices, search={"method": "dnad"}, teacher={"kind": "none"})
    with pytest.raises(ConfigError, match="DNAD distils from a teacher"):
        load_run_config(config)
    config = tiny_config(tmp_path, search={"method": "dca", "dca": {"epochs": 0}})
    with pytest.raises(ConfigError, match=r"search\.dca: epochs"):
        load_run_config(config)


def test_report_of_a_folder_that_is_no_run_is_a_user_error(tmp_path: Path, capsys) -> None:
    assert cli(["report", str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().err


@pytest.mark.slow
@needs_fashion
def test_example_config_end_to_end(tmp_path: Path) -> None:
    """The README's main job (about 10 minutes here): every model meets every budget."""
    res = run_pipeline(REPO / "examples" / "fashion_three_devices.yaml", run_dir=tmp_path / "run", quiet=True)
    assert res["all_pass"]
    assert all(d["test_accuracy"] > 0.8 for d in res["devices"])


@pytest.mark.slow
@needs_fashion
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray (the optional extra) is not installed")
def test_ray_executor_runs_the_pipeline_to_the_same_results(tmp_path: Path) -> None:
    """Same config, same seed: the local process pool and a local Ray instance give the same models."""
    config = tiny_config(tmp_path)
    local = run_pipeline(config, run_dir=tmp_path / "local", executor="local", quiet=True)
    ray = run_pipeline(config, run_dir=tmp_path / "ray", executor="ray", quiet=True)

    def essence(res: dict) -> list[tuple]:
        return [
            (d["device"], d["arch"], d["test_accuracy"], d["cost"]["params"], d["cost"]["flops"])
            for d in res["devices"]
        ]

    assert essence(ray) == essence(local)
    assert ray["teacher"]["test_accuracy"] == local["teacher"]["test_accuracy"]


@needs_fashion
def test_int8_device_is_quantized_and_checked_on_the_int8_model(tmp_path: Path) -> None:
    device = {
        "name": "mcu",
        "precision": "int8",
        "budgets": {"max_model_bytes": "1MiB", "max_peak_memory_bytes": "64KiB"},
        "method": "screen",
    }
    config = tiny_config(tmp_path, devices=[device], teacher={"kind": "none"}, train={"epochs": 1, "batch_size": 64})
    res = run_pipeline(config, run_dir=tmp_path / "run", quiet=True)
    (d,) = res["devices"]
    q = d["int8"]
    assert d["precision"] == "int8" and d["cost"]["precision"] == "int8"
    assert (tmp_path / "run" / q["onnx"]).is_file()
    checks = {c["budget"]: c["value"] for c in d["checks"]}
    assert checks["max_model_bytes"] == q["int8"]["model_bytes"] < q["fp32"]["model_bytes"]
    assert checks["max_peak_memory_bytes"] == q["int8"]["peak_memory_bytes"] == q["fp32"]["peak_memory_bytes"] // 4
    fp32_checks = {c["budget"]: c["value"] for c in q["fp32_checks"]}
    assert fp32_checks["max_model_bytes"] == q["fp32"]["model_bytes"]
    assert d["latency_measured_ms"] == q["int8"]["latency_ms"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "INT8 devices: float32 and INT8" in report and "model size" in report


@needs_fashion
def test_int8_device_with_a_table_checks_the_table_and_reports_latency_here(tmp_path: Path) -> None:
    """A table profile's INT8 latency budget is checked on the table's prediction, at select and at export
    alike, so a machine whose INT8 kernels are slower than the target's gets the same verdict; the INT8
    file's time measured here is reported beside it. The hand-made table (every kernel 1 ns) passes a
    1 ns-per-kernel budget that no network timed here can meet."""
    from edgenas.core.space import NetShape
    from edgenas.cost.lut import LatencyTable
    from edgenas.spaces.nb201 import latency as nb201_latency

    shape = NetShape(width=4, cells=1, in_channels=1, resolution=28, num_classes=10)
    keys = nb201_latency.required_keys(shape)
    fusion = {
        k: "nchw" if k.startswith(("conv:", "avg_pool_3x3:")) else "nchw conv" for k in nb201_latency.fusion_keys(shape)
    }  # plain layouts: any machine's graph
    table = LatencyTable(
        space="nb201", resolution=28, in_channels=1, num_classes=10, widths=[4], threads=1, warmup=1,
        repeats=1, overhead_ms=0.0, entries=dict.fromkeys(keys, 1e-6), fusion=fusion, precision="int8",
        name="hand",
    )  # fmt: skip
    table.save(tmp_path / "hand8.lut.json")
    device = {
        "name": "mcu",
        "precision": "int8",
        "budgets": {"max_latency_ms": 1e-6 * len(keys) * 10},
        "latency": {"source": "table", "table": str(tmp_path / "hand8.lut.json")},
        "method": "screen",
    }
    config = tiny_config(tmp_path, devices=[device], teacher={"kind": "none"}, train={"epochs": 1, "batch_size": 64})
    res = run_pipeline(config, run_dir=tmp_path / "run", quiet=True)
    (d,) = res["devices"]
    (check,) = [c for c in d["checks"] if c["budget"] == "max_latency_ms"]
    predicted = LatencyTable.load(tmp_path / "hand8.lut.json").predict_ms(d["arch"], shape)
    assert check["value"] == d["latency_predicted_ms"] == predicted and check["passed"] and d["all_pass"]
    assert d["latency_source"] == "table"
    assert d["latency_measured_ms"] == d["int8"]["int8"]["latency_ms"] > check["limit"]  # timed here, reported
    report = (tmp_path / "run" / "report.md").read_text()
    assert "(table: " in report and "latency predicted from the profile's table" in report


def test_screen_strategy_evolution_scores_n_archs_inside_each_devices_budgets(tmp_path: Path) -> None:
    from edgenas.core.space import NetShape
    from edgenas.cost.static import StaticCosts
    from edgenas.data import dataset_info
    from edgenas.pipeline.config import recorded_options
    from edgenas.pipeline.jobs import screen_job
    from edgenas.spaces import get_space

    cfg, _ = load_run_config(tiny_config(tmp_path))
    assert not {"strategy", "population"} & set(recorded_options(cfg)["screen"])  # defaults: older runs resume
    cfg, _ = load_run_config(tiny_config(tmp_path, screen={"strategy": "evolution", "n": 8, "population": 4}))
    assert recorded_options(cfg)["screen"]["strategy"] == "evolution"

    space = {"name": "nb201", "width": 4, "cells": 1}
    dataset = {"name": "digits", "data_dir": None, "subset": None, "val_fraction": 0.2, "resize": None}
    costs = StaticCosts(get_space("nb201"), NetShape.for_data(dataset_info("digits", None), 4, 1))
    # a params budget below the median of a uniform sample: random screening keeps only part of it
    draws = [str(a) for a in get_space("nb201").sample_distinct(40, np.random.default_rng(0))]
    limit = int(np.median([costs.cost(a).params for a in draws]))
    profiles = [{"name": "tight", "budgets": {"max_params": limit}}, {"name": "loose", "budgets": {}}]
    screen = {"proxies": "params,flops", "n": 8, "top": 3, "batch": 8, "latency_tries": 3, "population": 4}
    res = {
        strategy: screen_job(
            folder=str(tmp_path / strategy),
            profiles=profiles,
            dataset=dataset,
            space=space,
            screen={**screen, "strategy": strategy},
            seed=0,
            compute="cpu",
        )
        for strategy in ("random", "evolution")
    }
    assert res["random"]["loose"]["in_budget"] == 8 and res["random"]["tight"]["in_budget"] < 8
    for name in ("tight", "loose"):
        assert res["evolution"][name]["in_budget"] == 8  # n candidates, every one inside the budgets
        assert len(res["evolution"][name]["ranked"]) == 3
    assert all(costs.cost(a).params <= limit for a in res["evolution"]["tight"]["ranked"])
    results = json.loads((tmp_path / "evolution" / "tight" / "results.json").read_text())
    assert results["strategy"] == "evolution"
    assert all(c["params"] <= limit for c in results["candidates"])
