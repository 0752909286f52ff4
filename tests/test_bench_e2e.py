"""`edgenas bench e2e`: a tiny finished run, its arms per device (pick, largest, random and the stock
MobileNets fitted to the device) trained over seeds, resumed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_pipeline import needs_fashion, tiny_config

from edgenas.bench.e2e import ARMS, STOCK, arch_key, bench_e2e, stock_families, train_seed
from edgenas.bench.stats import mean_std, paired_difference
from edgenas.cli import run as cli
from edgenas.core.cost import Cost
from edgenas.core.device import DeviceProfile, fits
from edgenas.core.errors import ResumeError, UserError
from edgenas.core.seeding import numpy_rng
from edgenas.core.space import NetShape
from edgenas.cost.budget_check import check_arch_on_device
from edgenas.cost.measure import measure_cost
from edgenas.pipeline.run import run_pipeline
from edgenas.spaces import get_space

SAMPLE = 100  # archs costed (the whole NB201 space takes minutes)


def _e2e_sessions(run: Path) -> list[int]:
    """How many training jobs each `bench e2e` session started."""
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    return [e["jobs"] for e in events if e["event"] == "e2e_stage_start" and e["stage"] == "train"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-device run; bench e2e with one seed and no stock arm (the state an older edgenas
    wrote: the same keys), then grown to two seeds and the stock arms through the CLI."""
    tmp = tmp_path_factory.mktemp("e2e")
    config = tiny_config(tmp, train={"epochs": 1, "batch_size": 64})
    run = tmp / "run"
    run_pipeline(config, run_dir=run, quiet=True)
    one = bench_e2e(run, seeds=1, sample=SAMPLE, stock=(), threads=1, quiet=True)
    assert all(list(d["arms"]) == list(ARMS) and d["absent"] == {} for d in one["devices"]) and one["stock"] == []
    assert not [k for k in json.loads((run / "e2e" / "state.json").read_text())["jobs"] if k.startswith("stock/")]
    (run / "e2e-no-stock.json").write_text((run / "e2e.json").read_text())
    assert all(a["n"] == 1 and a["std"] is None for d in one["devices"] for a in d["arms"].values())
    assert all(d["differences"]["pick-largest"]["low"] is None for d in one["devices"])  # one seed: no interval
    assert cli(["bench", "e2e", str(run), "--seeds", "2", "--sample", str(SAMPLE), "--threads", "1", "--quiet"]) == 0
    return run


@needs_fashion
def test_json_holds_every_seed_and_the_figures_are_computed_from_them(tiny_run: Path) -> None:
    res = json.loads((tiny_run / "e2e.json").read_text())
    run_res = json.loads((tiny_run / "results.json").read_text())
    assert res["schema_version"] == 1 and res["seeds"] == 2 and res["pool"]["archs"] == SAMPLE
    assert len(set(res["train_seeds"])) == 2 and run_res["seed"] not in res["train_seeds"]
    assert res["train_seeds"] == [train_seed(run_res["seed"], k) for k in range(2)]
    stored = yaml.safe_load((tiny_run / "config.yaml").read_text())["options"]
    protocol = res["protocol"]
    assert protocol["how"] == "distill" and protocol["teacher"] == str(Path(run_res["teacher"]["run_dir"]) / "model.pt")
    assert {k: stored["train"][k] for k in protocol["train"]} == protocol["train"]
    assert protocol["kd"] == {"kd_weight": stored["train"]["kd_weight"], "temperature": stored["train"]["temperature"]}
    assert (protocol["width"], protocol["cells"]) == (stored["space"]["width"], stored["space"]["cells"])
    assert [d["device"] for d in res["devices"]] == [d["device"] for d in run_res["devices"]]
    assert res["stock"] == list(STOCK)
    for d, run_d in zip(res["devices"], run_res["devices"], strict=True):
        assert list(d["arms"]) == [*ARMS, *(f for f in STOCK if f not in d["absent"])]
        assert d["arms"]["pick"]["arch"] == run_d["arch"]
        assert set(d["differences"]) == {f"pick-{arm}" for arm in d["arms"] if arm != "pick"}
        for arm in d["arms"].values():
            accs = arm["test_accuracy"]
            assert len(accs) == arm["n"] == 2 and all(0 <= a <= 1 for a in accs)
            assert (arm["mean"], arm["std"]) == pytest.approx(mean_std(accs))
            # each seed's figure is that training run's own result
            for k, acc in enumerate(accs):
                folder = tiny_run / "e2e" / "train" / f"{arch_key(arm['arch'])}-seed{k}"
                trained = json.loads((folder / "results.json").read_text())
                assert trained["test_accuracy"] == acc and trained["teacher"] == protocol["teacher"]
        for other in (a for a in d["arms"] if a != "pick"):
            want = paired_difference(d["arms"]["pick"]["test_accuracy"], d["arms"][other]["test_accuracy"])
            got = d["differences"][f"pick-{other}"]
            assert (got["estimate"], got["low"], got["high"], got["n"]) == pytest.approx(
                (want.estimate, want.low, want.high, want.n)
            )


@needs_fashion
def test_each_seed_trains_with_its_own_seed_and_the_run_protocol(tiny_run: Path) -> None:
    res = json.loads((tiny_run / "e2e.json").read_text())
    arch = res["devices"][0]["arms"]["pick"]["arch"]
    for k in range(2):
        opts = yaml.safe_load((tiny_run / "e2e" / "train" / f"{arch_key(arch)}-seed{k}" / "config.yaml").read_text())
        assert opts["command"] == "distill"
        assert opts["options"]["train"]["seed"] == res["train_seeds"][k]
        assert opts["options"]["train"]["epochs"] == res["protocol"]["train"]["epochs"]
        assert opts["options"]["arch"] == arch


@needs_fashion
def test_arms_meet_every_budget_and_largest_is_the_largest_of_the_pool(tiny_run: Path) -> None:
    res = json.loads((tiny_run / "e2e.json").read_text())
    stored = yaml.safe_load((tiny_run / "config.yaml").read_text())
    profiles = {p["name"]: DeviceProfile(**p) for p in stored["profiles"]}
    state = json.loads((tiny_run / "e2e" / "state.json").read_text())
    space = get_space("nb201")
    shape = NetShape(width=stored["options"]["space"]["width"], cells=1, in_channels=1, resolution=28)
    pool = [c for k, v in state["jobs"].items() if k.startswith("cost/") for c in v]
    assert len(pool) == SAMPLE
    for d in res["devices"]:
        p = profiles[d["device"]]
        for name in ("largest", "random"):
            arm = d["arms"][name]
            cost, checks = check_arch_on_device(space, arm["arch"], shape, p, latency=False)
            assert not [c for c in checks if c.passed is False], (d["device"], name)
            assert cost.flops == arm["cost"]["flops"] and cost.params == arm["cost"]["params"]
            if p.budgets.max_latency_ms is not None:
                assert arm["cost"]["latency_ms"] <= p.budgets.max_latency_ms
        # no arch of the costed pool that fits the static budgets has more FLOPs than `largest`
        fitting = [f for params, f, peak in pool if fits(p.budgets, _cost(params, f, peak))]
        assert len(fitting) == d["static_fit"] and d["arms"]["largest"]["cost"]["flops"] == max(fitting)
    # the pool's costs are the exact ones
    rng = np.random.default_rng(0)
    chunk = state["jobs"]["cost/0"]
    archs = space.sample_distinct(SAMPLE, numpy_rng(0, "bench-e2e-pool"))  # the pool of a run with seed 0
    for i in rng.choice(len(chunk), size=3, replace=False):
        c = measure_cost(space.build(archs[i], shape), shape.input_shape)
        assert chunk[i] == [c.params, c.flops, c.peak_memory_bytes]


def _cost(params: int, flops: int, peak: int) -> Cost:
    return Cost(params, flops, peak)


@needs_fashion
def test_more_seeds_train_only_the_new_ones_and_an_interrupted_job_alone_is_redone(tiny_run: Path) -> None:
    res = json.loads((tiny_run / "e2e.json").read_text())
    archs = {a["arch"] for d in res["devices"] for a in d["arms"].values()}
    stock = {a["arch"] for d in res["devices"] for name, a in d["arms"].items() if name in STOCK}
    sessions = _e2e_sessions(tiny_run)
    # seed 0 of each distinct arch of the older arms, then their seed 1 and both seeds of the new stock arms
    assert sessions[:2] == [len(archs) - len(stock), len(archs) - len(stock) + 2 * len(stock)]

    # an interruption: one job's record and folder are lost; the rerun trains that job alone
    lost = next(iter(archs))
    state_file = tiny_run / "e2e" / "state.json"
    state = json.loads(state_file.read_text())
    del state["jobs"][f"train/{arch_key(lost)}/seed1"]
    state_file.write_text(json.dumps(state))
    shutil.rmtree(tiny_run / "e2e" / "train" / f"{arch_key(lost)}-seed1")
    again = bench_e2e(tiny_run, seeds=2, sample=SAMPLE, threads=1, quiet=True)
    assert _e2e_sessions(tiny_run)[-1] == 1
    assert again["devices"] == res["devices"]  # the same seed trains to the same numbers


@needs_fashion
def test_two_arms_with_one_arch_share_its_training_and_differ_by_zero(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    state_file = run / "e2e" / "state.json"
    state = json.loads(state_file.read_text())
    res = json.loads((run / "e2e.json").read_text())
    device = res["devices"][0]
    state["jobs"][f"arms/{device['device']}"]["largest"]["arch"] = device["arms"]["pick"]["arch"]
    state_file.write_text(json.dumps(state))
    before = len(_e2e_sessions(run))
    out = bench_e2e(run, seeds=2, sample=SAMPLE, threads=1, quiet=True)
    assert len(_e2e_sessions(run)) == before  # nothing new to train
    d = out["devices"][0]
    assert d["arms"]["largest"]["same_as"] == ["pick"] and d["arms"]["pick"]["same_as"] == ["largest"]
    assert d["differences"]["pick-largest"]["estimate"] == 0.0 == d["differences"]["pick-largest"]["high"]
    assert "0 (same arch as pick)" in (run / "report.md").read_text()


@needs_fashion
def test_report_gains_the_end_to_end_section(tiny_run: Path) -> None:
    (tiny_run / "report.md").unlink()
    (tiny_run / "e2e.png").unlink()
    assert cli(["report", str(tiny_run)]) == 0  # rebuilt from e2e.json alone
    md = (tiny_run / "report.md").read_text()
    res = json.loads((tiny_run / "e2e.json").read_text())
    assert "## End-to-end check" in md and "![e2e](e2e.png)" in md and (tiny_run / "e2e.png").stat().st_size > 0
    for d in res["devices"]:
        for arm, a in d["arms"].items():
            assert f"| {d['device']} | {arm} |" in md
            assert f"{a['mean'] * 100:.2f} ± {a['std'] * 100:.2f}% (n=2)" in md
        diff = d["differences"]["pick-largest"]
        if not d["arms"]["largest"]["same_as"]:
            assert f"{diff['estimate'] * 100:+.2f} [{diff['low'] * 100:+.2f}, {diff['high'] * 100:+.2f}]" in md
    html = (tiny_run / "report.html").read_text()
    assert "<h2>End-to-end check</h2>" in html and html.count("data:image/png;base64,") == 3


@needs_fashion
def test_a_different_sample_on_resume_is_refused(tiny_run: Path) -> None:
    with pytest.raises(ResumeError, match="seeded sample of 100 archs, now a seeded sample of 50"):
        bench_e2e(tiny_run, seeds=2, sample=50, quiet=True)


def test_bad_input_is_one_line(tmp_path: Path, capsys) -> None:
    assert cli(["bench", "e2e", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an edgenas run folder" in err[0]
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text("command: run\n")
    assert cli(["bench", "e2e", str(unfinished)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has not finished" in err[0]
    (unfinished / "config.yaml").write_text("command: train\n")
    assert cli(["bench", "e2e", str(unfinished)]) == 2
    assert "not `edgenas run`" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli(["bench", "e2e", str(unfinished), "--seeds", "0"])
    assert exit_.value.code == 2 and "must be >= 1" in capsys.readouterr().err
    with pytest.raises(UserError, match="--seeds must be >= 1"):
        bench_e2e(unfinished, seeds=0)
    assert not (unfinished / "e2e").exists()


# -- the stock arms (issue 18): MobileNetV3-Small / MobileNetV2 fitted to each device ------------------
@needs_fashion
def test_stock_arms_meet_every_budget_or_are_reported_absent(tiny_run: Path) -> None:
    from edgenas.distill.generic_teacher import CapacityCoder
    from edgenas.pipeline.baseline import multipliers, stock_cost

    res = json.loads((tiny_run / "e2e.json").read_text())
    stored = yaml.safe_load((tiny_run / "config.yaml").read_text())
    profiles = {p["name"]: DeviceProfile(**p) for p in stored["profiles"]}
    shape = NetShape(width=stored["options"]["space"]["width"], cells=1, in_channels=1, resolution=28)
    md = (tiny_run / "report.md").read_text()
    present, absent = 0, 0
    for d in res["devices"]:
        p = profiles[d["device"]]
        static = p.budgets.model_copy(update={"max_latency_ms": None})
        for family in STOCK:
            if family in d["absent"]:  # one line saying why, no arm, no difference
                absent += 1
                why = d["absent"][family]
                assert family not in d["arms"] and f"pick-{family}" not in d["differences"]
                assert f"no {family} multiplier" in why and repr(p.name) in why and "\n" not in why
                assert f"| {d['device']} | {family} | absent: {why} |" in md
                # in this config even the narrowest network misses a static budget
                assert not fits(static, stock_cost(family, 0.05, shape, p, latency=False))
                continue
            present += 1
            arm = d["arms"][family]
            m = arm["multiplier"]
            assert arm["arch"] == f"{family}@{m:g}" and m in multipliers() and arm["same_as"] == []
            exact = stock_cost(family, m, shape, p, latency=False)
            assert [arm["cost"][k] for k in ("params", "flops", "peak_memory_bytes")] == [
                exact.params,
                exact.flops,
                exact.peak_memory_bytes,
            ]
            assert fits(p.budgets, Cost(**arm["cost"]))
            if p.budgets.max_latency_ms is not None:
                assert arm["cost"]["latency_ms"] <= p.budgets.max_latency_ms
            bigger = stock_cost(family, round(m + 0.05, 4), shape, p, latency=False)
            assert not fits(static, bigger) or p.budgets.max_latency_ms is not None  # the largest that fits
            # trained with the students' protocol and seeds, distilled from the run's (FiLM) teacher
            for k, acc in enumerate(arm["test_accuracy"]):
                folder = tiny_run / "e2e" / "train" / f"{arch_key(arm['arch'])}-seed{k}"
                opts = yaml.safe_load((folder / "config.yaml").read_text())["options"]
                trained = json.loads((folder / "results.json").read_text())
                assert opts["train"]["seed"] == res["train_seeds"][k] and trained["test_accuracy"] == acc
                assert {n: opts["train"][n] for n in res["protocol"]["train"]} == res["protocol"]["train"]
                assert trained["teacher"] == res["protocol"]["teacher"] and trained["kd"]["kd_weight"] == 1.0
                assert opts["dataset"] == res["protocol"]["dataset"]["name"]
                assert opts["subset"] == res["protocol"]["dataset"]["subset"]
            code = CapacityCoder(shape, "nb201").code_of_cost(exact.flops, exact.params)
            assert arm["capacity_code"] == pytest.approx(code.tolist()) and all(-1 <= c <= 1 for c in code)
    assert present and absent  # the tiny config has both kinds


def test_the_stock_option_and_an_older_e2e_json(tmp_path: Path, capsys) -> None:
    from edgenas.report.plots import e2e_plot
    from edgenas.report.run_report import e2e_rows

    assert stock_families(["mbv2", "mbv3-small"]) == STOCK and stock_families(["none"]) == () == stock_families([])
    with pytest.raises(UserError, match="give it alone"):
        stock_families(["none", "mbv2"])
    with pytest.raises(UserError, match="unknown 'mbv1'"):
        stock_families(["mbv1"])
    assert cli(["bench", "e2e", str(tmp_path), "--stock", "none", "mbv2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--stock none" in err[0]
    # e2e.json from before the stock arms (no `absent`) still reads; an absent arm is a row, and a gap in the plot
    arm = {"arch": "a", "cost": {"flops": 10}, "same_as": [], "test_accuracy": [0.5], "mean": 0.5, "std": None, "n": 1}
    old = {"device": "d", "arms": {"pick": arm, "largest": arm}, "differences": {"pick-largest": None}}
    new = {**old, "device": "e", "arms": {**old["arms"], "mbv2": arm}, "absent": {"mbv3-small": "no fit"}}
    _, rows = e2e_rows({"devices": [old, new]})
    assert [r[:3] for r in rows] == [
        ["d", "pick", "`a`"],
        ["d", "largest", "`a`"],
        ["e", "pick", "`a`"],
        ["e", "largest", "`a`"],
        ["e", "mbv2", "`a`"],
        ["e", "mbv3-small", "absent: no fit"],
    ]
    assert e2e_plot(tmp_path / "e2e.png", [old, new], "t").stat().st_size > 0


def test_a_stock_network_is_coded_on_the_students_scale() -> None:
    from edgenas.distill.generic_teacher import CapacityCoder

    shape = NetShape(width=4, cells=1, in_channels=1, resolution=28)
    coder = CapacityCoder(shape, "nb201")
    space = get_space("nb201")
    for arch in space.sample_distinct(3, numpy_rng(0, "code")):
        c = measure_cost(space.build(arch, shape), shape.input_shape)
        assert coder.code_of_cost(c.flops, c.params).tolist() == pytest.approx(coder.code(arch).tolist(), abs=1e-5)
    assert coder.code_of_cost(1e15, 1e15).tolist() == [1.0, 1.0]  # beyond the space: FiLM's range, clamped
    assert coder.code_of_cost(1, 1).tolist() == [-1.0, -1.0]


def test_a_stock_job_resumes_after_an_interruption(tmp_path: Path) -> None:
    from edgenas.pipeline.jobs import stock_job
    from edgenas.train.trainer import Trainer

    kw = {
        "family": "mbv3-small",
        "multiplier": 0.1,
        "dataset": {"name": "digits", "data_dir": None, "subset": 400, "val_fraction": 0.1, "resize": None},
        "width": 4,
        "cells": 1,
        "train": {"epochs": 2, "batch_size": 64, "seed": 3},
        "compute": "cpu",
    }
    straight = stock_job(folder=str(tmp_path / "a"), **kw)
    original = Trainer.save_checkpoint

    def stop_after_first(self: Trainer) -> None:
        original(self)
        raise KeyboardInterrupt

    Trainer.save_checkpoint = stop_after_first
    try:
        with pytest.raises(KeyboardInterrupt):
            stock_job(folder=str(tmp_path / "b"), **kw)
    finally:
        Trainer.save_checkpoint = original
    resumed = stock_job(folder=str(tmp_path / "b"), **kw)
    assert resumed["resumed_from_epoch"] == 1 and resumed["arch"] == "mbv3-small@0.1"
    assert resumed["test_accuracy"] == straight["test_accuracy"] and resumed["capacity_code"] is None
    assert stock_job(folder=str(tmp_path / "b"), **kw)["test_accuracy"] == straight["test_accuracy"]  # finished
