"""`edgenas bench e2e`: a tiny finished run, its three arms per device trained over seeds, resumed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_pipeline import needs_fashion, tiny_config

from edgenas.bench.e2e import ARMS, arch_key, bench_e2e, train_seed
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
    """A finished two-device run; bench e2e with one seed, then grown to two through the CLI."""
    tmp = tmp_path_factory.mktemp("e2e")
    config = tiny_config(tmp, train={"epochs": 1, "batch_size": 64})
    run = tmp / "run"
    run_pipeline(config, run_dir=run, quiet=True)
    one = bench_e2e(run, seeds=1, sample=SAMPLE, threads=1, quiet=True)
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
    for d, run_d in zip(res["devices"], run_res["devices"], strict=True):
        assert list(d["arms"]) == list(ARMS) and d["arms"]["pick"]["arch"] == run_d["arch"]
        for arm in d["arms"].values():
            accs = arm["test_accuracy"]
            assert len(accs) == arm["n"] == 2 and all(0 <= a <= 1 for a in accs)
            assert (arm["mean"], arm["std"]) == pytest.approx(mean_std(accs))
            # each seed's figure is that training run's own result
            for k, acc in enumerate(accs):
                folder = tiny_run / "e2e" / "train" / f"{arch_key(arm['arch'])}-seed{k}"
                trained = json.loads((folder / "results.json").read_text())
                assert trained["test_accuracy"] == acc and trained["teacher"] == protocol["teacher"]
        for other in ("largest", "random"):
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
    sessions = _e2e_sessions(tiny_run)
    assert sessions[:2] == [len(archs), len(archs)]  # seed 0 for each distinct arch, then seed 1 only

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
