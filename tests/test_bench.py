"""Ground-truth builder (seeds, resume, protocol guard), its reliability, and the proxy correlation benchmark."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from edgenas.bench.correlation import kendall, spearman
from edgenas.bench.stats import predicted_tau, seeds_for_tau, tau_ceiling
from edgenas.bench.truth import (
    TruthProtocol,
    build_truth,
    read_arch_list,
    read_truth,
    read_truth_runs,
    run_seed,
    sample_archs,
    truth_reliability,
)
from edgenas.core.errors import ConfigError

TINY = TruthProtocol(dataset="digits", width=4, cells=1, subset=600, epochs=2, batch_size=64)


def test_truth_builds_resumes_and_guards_protocol(tmp_path: Path) -> None:
    out = tmp_path / "truth.jsonl"
    rows = build_truth(out, TINY, n=2, workers=1, quiet=True)
    assert len(rows) == 2 and all(0 <= r["test_accuracy"] <= 1 and r["flops"] > 0 for r in rows)
    first_lines = out.read_text().splitlines()
    rows = build_truth(out, TINY, n=3, workers=1, quiet=True, threads=1)  # same sample prefix: only one new arch
    assert len(rows) == 3 and out.read_text().splitlines()[:2] == first_lines
    assert rows[2]["threads"] == 1  # `threads` overrides the default split of the cores
    with open(out, "a") as fh:  # a torn line from a killed writer is skipped, not fatal
        fh.write('{"arch": "|nor_conv')
    assert len(read_truth(out)) == 3
    with pytest.raises(ConfigError, match="differs in: epochs"):
        build_truth(out, TINY.model_copy(update={"epochs": 3}), n=3, workers=1, quiet=True)


def test_arch_list_errors(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|\n|bad~0|+\n")
    with pytest.raises(ConfigError, match=r"a\.txt:2"):
        read_arch_list(f, "nb201")


def test_correlations_hand_checked() -> None:
    acc = [0.1, 0.2, 0.3, 0.4]
    assert kendall([1, 2, 3, 4], acc) == pytest.approx(1.0)
    assert kendall([4, 3, 2, 1], acc) == pytest.approx(-1.0)
    # one discordant pair (3,4 swapped) of 6: tau = (5 - 1) / 6
    assert kendall([1, 2, 4, 3], acc) == pytest.approx(4 / 6)
    assert spearman([1, 2, 4, 3], acc) == pytest.approx(1 - 6 * 2 / (4 * 15))
    assert kendall([float("nan"), 2, 3, 4], acc) == pytest.approx(1.0)  # NaN ranks at the bottom


def test_bench_proxies_on_a_small_truth(tmp_path: Path) -> None:
    from edgenas.bench.proxy_bench import bench_proxies
    from edgenas.core.rundir import RunDir
    from edgenas.proxies import AZ_PROXIES

    out = tmp_path / "truth.jsonl"
    build_truth(out, TINY, n=4, workers=1, quiet=True)
    res = bench_proxies(
        out, list(AZ_PROXIES), run=RunDir.create("b", tmp_path / "b"), batch=8, compute="cpu", quiet=True
    )
    assert set(res["kendall_tau"]) == {*AZ_PROXIES, "AZ (log-rank sum)", "AZ linear rank sum"}
    assert all(-1 <= t <= 1 for t in res["kendall_tau"].values())
    assert all(s > 0 for s in res["seconds_per_arch"].values())
    ivs = res["kendall_tau_interval"]
    assert set(ivs) == set(res["kendall_tau"]) and res["truth_reliability"] is None  # 1 seed: no ceiling
    for n, iv in ivs.items():
        assert iv["estimate"] == res["kendall_tau"][n] and iv["n"] == 4 and iv["method"] == "bootstrap items"
    for f in ("results.json", "proxies.csv", "correlations.png"):
        assert (tmp_path / "b" / f).is_file()
    assert json.loads((tmp_path / "b" / "results.json").read_text())["archs"] == 4


def test_bench_commands_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`edgenas bench truth` then `bench proxies`: each prints its summary and writes its files."""
    from edgenas.cli import run

    out = tmp_path / "truth.jsonl"
    tiny = ["--dataset", "digits", "--width", "4", "--subset", "600", "--epochs", "2", "--batch-size", "64"]
    assert run(["bench", "truth", "--n", "3", "--out", str(out), "--workers", "1", "--quiet", *tiny]) == 0
    assert capsys.readouterr().out.startswith(f"3 archs in {out}; test accuracy (full test set) min ")
    assert json.loads(out.with_name("truth.jsonl.protocol.json").read_text())["protocol"] == TINY.model_dump()
    argv = ["bench", "proxies", "--truth", str(out), "--proxies", "az,synflow", "--batch", "8", "--compute", "cpu"]
    assert run([*argv, "--run-dir", str(tmp_path / "b"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "proxies vs trained accuracy on 3 archs" in printed and "synflow" in printed
    assert f"run directory: {tmp_path / 'b'}" in printed
    config = (tmp_path / "b" / "config.yaml").read_text()
    assert "bench proxies" in config and "synflow" in config
    assert "95% interval" in printed and "truth self-agreement: unknown (1 seed per arch" in printed
    saved = json.loads((tmp_path / "b" / "results.json").read_text())
    assert set(saved["kendall_tau_interval"]) == set(saved["kendall_tau"]) >= {"synflow", "AZ (log-rank sum)"}


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--n", "2", "--archs", "a.txt"], "exactly one of --n N"),
        ([], "exactly one of --n N"),
    ],
)
def test_bench_truth_needs_n_or_archs(argv: list[str], needle: str, tmp_path: Path, capsys) -> None:
    from edgenas.cli import run

    assert run(["bench", "truth", "--out", str(tmp_path / "t.jsonl"), *argv]) == 2
    assert needle in capsys.readouterr().err


# -- multi-seed truth ----------------------------------------------------------------------
# seed 0 and seed 1 of 4 archs: one pair (archs 0 and 1) swaps order, so split-half τ = (5 - 1) / 6;
# per-arch |difference| 2, 9, 1, 4 points, std = |difference| / sqrt(2)
SEED0 = [0.70, 0.80, 0.90, 0.60]
SEED1 = [0.72, 0.71, 0.91, 0.64]


def _hand_made_truth(tmp_path: Path, seeds: int = 2, seed1: list[float] = SEED1) -> tuple[Path, list[str]]:
    """4 archs with known accuracies; seed-0 lines in the format written before seeds existed,
    plus a fifth arch that lacks seed 1 (a build in progress)."""
    archs = sample_archs("nb201", 5, 0)
    out = tmp_path / "hand.jsonl"
    proto = TruthProtocol(dataset="digits", width=4, subset=600, seeds=seeds).model_dump()
    out.with_name(out.name + ".protocol.json").write_text(json.dumps({"schema_version": 2, "protocol": proto}))
    lines = [
        {"arch": a, "test_accuracy": acc, "params": 1, "flops": 1} for a, acc in zip(archs, [*SEED0, 0.5], strict=True)
    ]
    lines += [
        {"arch": a, "seed_index": 1, "seed": 123, "test_accuracy": acc, "params": 1, "flops": 1}
        for a, acc in zip(archs[:4], seed1, strict=True)
    ]
    out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return out, archs


def test_reliability_of_a_hand_made_truth(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from edgenas.cli import run

    out, archs = _hand_made_truth(tmp_path)
    rows = read_truth(out)
    assert [r["arch"] for r in rows] == archs[:4]  # the arch without seed 1 is left out
    assert rows[1]["test_accuracies"] == [0.80, 0.71] and rows[1]["test_accuracy"] == pytest.approx(0.755)
    rel = truth_reliability(out)
    assert (rel["archs"], rel["seeds"]) == (4, 2)
    assert rel["split_half_tau"] == pytest.approx(4 / 6)
    assert rel["std_points_mean"] == pytest.approx(4 / 2**0.5)  # mean |difference| 4 points
    assert rel["std_points_max"] == pytest.approx(9 / 2**0.5) and rel["std_points_max_arch"] == archs[1]
    assert rel["between_arch_std_points"] == pytest.approx(100 * 0.014175**0.5)  # means .71 .755 .905 .62
    assert rel["predicted_split_half_tau"] == pytest.approx(predicted_tau(rel["rank_icc"], 1))
    assert 0 < rel["rank_icc"] < 1 and rel["target_tau"] == 0.7
    assert rel["seeds_for_target"] == pytest.approx(seeds_for_tau(rel["rank_icc"], 0.7))
    assert rel["tau_ceiling"] == pytest.approx(tau_ceiling(rel["rank_icc"], 2))
    iv = rel["split_half_interval"]
    assert iv["n"] == 4 and iv["method"] == "bootstrap archs" and -1 <= iv["low"] <= iv["high"] <= 1
    assert run(["bench", "truth", "--reliability", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"4 archs × 2 seeds in {out}" in printed
    assert "split-half Kendall τ (seed 0 vs seed 1): 0.667 [" in printed
    assert f"per-arch std over seeds: mean 2.83 points, max 6.36 points ({archs[1]})" in printed
    assert "spread of the seed means across archs: std 11.91 points" in printed
    assert f"a perfect score would reach τ ≈ {rel['tau_ceiling']:.3f} against the mean of the 2 seeds" in printed
    assert f"rank ICC (single-seed reliability): {rel['rank_icc']:.3f}" in printed
    assert f"agree at τ 0.7 with ≈ {math.ceil(rel['seeds_for_target'])} seeds per arch each" in printed
    assert "protocol: space=nb201, dataset=digits" in printed and "seeds=2" in printed

    (tmp_path / "reversed").mkdir()  # seed 1 ranks the archs in reverse: no signal between archs
    flipped, _ = _hand_made_truth(tmp_path / "reversed", seed1=[0.80, 0.70, 0.60, 0.90])
    assert truth_reliability(flipped)["rank_icc"] < 0 and truth_reliability(flipped)["seeds_for_target"] is None
    assert run(["bench", "truth", "--reliability", str(flipped)]) == 0
    assert "no arch signal above seed noise" in capsys.readouterr().out

    (tmp_path / "one").mkdir()
    one, _ = _hand_made_truth(tmp_path / "one", seeds=1)
    assert len(read_truth(one)) == 5  # with 1 seed every arch is complete
    assert run(["bench", "truth", "--reliability", str(one)]) == 2
    err = capsys.readouterr().err
    assert "has 1 seed per arch; reliability needs >= 2" in err and len(err.strip().splitlines()) == 1
    assert run(["bench", "truth", "--reliability", str(out), "--n", "3"]) == 2
    assert "without --out, --n or --archs" in capsys.readouterr().err
    assert run(["bench", "truth", "--n", "3"]) == 2
    assert "needs --out FILE (or --reliability FILE" in capsys.readouterr().err


def test_bench_proxies_reports_the_truth_ceiling(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from edgenas.cli import run

    out, _ = _hand_made_truth(tmp_path)
    argv = ["bench", "proxies", "--truth", str(out), "--proxies", "synflow", "--batch", "8", "--compute", "cpu"]
    assert run([*argv, "--run-dir", str(tmp_path / "b"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "proxies vs trained accuracy on 4 archs" in printed
    assert "truth self-agreement: split-half τ 0.667 [" in printed and "over 2 seeds" in printed
    saved = json.loads((tmp_path / "b" / "results.json").read_text())
    assert saved["truth_reliability"]["split_half_tau"] == pytest.approx(4 / 6)
    ceiling = tau_ceiling(saved["truth_reliability"]["rank_icc"], 2)
    assert f"a perfect score would reach τ ≈ {ceiling:.3f} against this truth" in printed
    iv = saved["kendall_tau_interval"]["synflow"]
    assert iv["estimate"] == saved["kendall_tau"]["synflow"] and iv["low"] <= iv["high"] and iv["n"] == 4


def test_multi_seed_truth_builds_resumes_and_grows(tmp_path: Path) -> None:
    from edgenas.data import load_dataset

    two = TINY.model_copy(update={"epochs": 1, "seeds": 2})
    out = tmp_path / "truth.jsonl"
    rows = build_truth(out, two, n=2, workers=1, quiet=True, threads=1)
    full_test = len(load_dataset("digits", subset=600).test)
    assert len(rows) == 2 and all(len(r["test_accuracies"]) == 2 and r["seeds"] == 2 for r in rows)
    assert all(r["test_accuracy"] == pytest.approx(sum(r["test_accuracies"]) / 2) for r in rows)
    assert all(r["test_images"] == full_test for r in rows)  # the whole test split, not a subset
    sidecar = json.loads(out.with_name("truth.jsonl.protocol.json").read_text())
    assert sidecar["protocol"]["seeds"] == 2 and sidecar["test_set"] == "full" and sidecar["test_images"] == full_test
    runs = read_truth_runs(out)
    assert all([runs[a][k]["seed"] for k in (0, 1)] == [0, run_seed(0, 1)] for a in runs)
    assert run_seed(0, 1) != 0

    # an interrupted build: the last run was never written, a torn line was
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:-1]) + '\n{"arch": "|nor_co')
    assert len(read_truth(out)) == 1  # the arch missing a seed is not reported yet
    rows = build_truth(out, two, n=2, workers=1, quiet=True, threads=1)
    again = [line for line in out.read_text().splitlines() if line.startswith("{") and line.endswith("}")]
    assert len(rows) == 2 and again[:3] == lines[:3] and len(again) == 4  # only the missing run was trained
    redo, lost = json.loads(again[3]), json.loads(lines[3])
    assert (redo["arch"], redo["seed_index"], redo["test_accuracy"]) == (
        lost["arch"],
        lost["seed_index"],
        lost["test_accuracy"],
    )  # the same seed gives the same run

    with pytest.raises(ConfigError, match="differs in: epochs"):
        build_truth(out, two.model_copy(update={"epochs": 2}), n=2, workers=1, quiet=True)
    with pytest.raises(ConfigError, match="holds 2 seeds per arch; --seeds 1 would hide some"):
        build_truth(out, TINY.model_copy(update={"epochs": 1}), n=2, workers=1, quiet=True)

    # a one-seed file of the old format grows to 2 seeds by training seed 1 only
    old = tmp_path / "old.jsonl"
    first = {k: v for k, v in runs[rows[0]["arch"]][0].items() if k not in ("seed_index", "seed")}
    old.write_text(json.dumps(first) + "\n")
    old_proto = {k: v for k, v in TINY.model_copy(update={"epochs": 1}).model_dump().items() if k != "seeds"}
    old.with_name("old.jsonl.protocol.json").write_text(json.dumps({"schema_version": 1, "protocol": old_proto}))
    assert read_truth(old)[0]["test_accuracies"] == [first["test_accuracy"]]
    assert build_truth(old, TINY.model_copy(update={"epochs": 1}), archs=[first["arch"]], workers=1, quiet=True)
    grown = build_truth(old, two, archs=[first["arch"]], workers=1, quiet=True, threads=1)
    assert len(old.read_text().splitlines()) == 2
    assert grown[0]["test_accuracies"] == [runs[first["arch"]][k]["test_accuracy"] for k in (0, 1)]
    assert json.loads(old.with_name("old.jsonl.protocol.json").read_text())["protocol"]["seeds"] == 2
