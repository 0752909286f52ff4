"""Ground-truth builder (resume, protocol guard) and the proxy correlation benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgenas.bench.correlation import kendall, spearman
from edgenas.bench.truth import TruthProtocol, build_truth, read_arch_list, read_truth
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
    for f in ("results.json", "proxies.csv", "correlations.png"):
        assert (tmp_path / "b" / f).is_file()
    assert json.loads((tmp_path / "b" / "results.json").read_text())["archs"] == 4


def test_bench_commands_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`edgenas bench truth` then `bench proxies`: each prints its summary and writes its files."""
    from edgenas.cli import run

    out = tmp_path / "truth.jsonl"
    tiny = ["--dataset", "digits", "--width", "4", "--subset", "600", "--epochs", "2", "--batch-size", "64"]
    assert run(["bench", "truth", "--n", "3", "--out", str(out), "--workers", "1", "--quiet", *tiny]) == 0
    assert capsys.readouterr().out.startswith(f"3 archs in {out}; test accuracy min ")
    assert json.loads(out.with_name("truth.jsonl.protocol.json").read_text())["protocol"] == TINY.model_dump()
    argv = ["bench", "proxies", "--truth", str(out), "--proxies", "az,synflow", "--batch", "8", "--compute", "cpu"]
    assert run([*argv, "--run-dir", str(tmp_path / "b"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "proxies vs trained accuracy on 3 archs" in printed and "synflow" in printed
    assert f"run directory: {tmp_path / 'b'}" in printed
    config = (tmp_path / "b" / "config.yaml").read_text()
    assert "bench proxies" in config and "synflow" in config
    assert (tmp_path / "b" / "results.json").is_file()


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
