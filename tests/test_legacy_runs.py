"""Run folders written before the layout move (commit a20e9d5, `tests/fixtures/legacy_runs/make.py`)
still resume and rebuild their reports: a finished pipeline run, and a DCA and a DNAD search
each interrupted after their first search epoch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgenas.cli import run as cli

FIXTURES = Path(__file__).parent / "fixtures" / "legacy_runs"
WRITTEN_AT = "/tmp/legacy_runs"  # where make.py wrote them; paths inside the folders point there


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    """A copy of the fixtures with their absolute paths pointing at the copy."""
    out = tmp_path / "legacy_runs"
    shutil.copytree(FIXTURES, out)
    for f in out.rglob("*"):
        if f.suffix in {".yaml", ".json", ".jsonl"}:
            f.write_text(f.read_text().replace(WRITTEN_AT, str(out)))
    return out


@pytest.mark.parametrize("method", ["dca", "dnad"])
def test_an_interrupted_search_resumes(legacy: Path, method: str, capsys) -> None:
    assert not (legacy / method / "results.json").exists()
    assert cli(["search", "--resume", str(legacy / method), "--compute", "cpu", "--quiet"]) == 0
    res = json.loads((legacy / method / "results.json").read_text())
    assert res["resumed_from_epoch"] == 1
    if method == "dca":
        assert res["arch"].startswith("|") and res["checks"]
    else:
        assert res["snapshots"] and res["pareto"]


def test_a_pipeline_run_resumes_and_rebuilds_its_report(legacy: Path, capsys) -> None:
    run = legacy / "pipeline"
    state = json.loads((run / "state.json").read_text())
    del state["jobs"]["export/big"]  # a job left to do: the resume must redo it with today's code
    (run / "state.json").write_text(json.dumps(state))
    code = cli(["run", str(legacy / "pipeline.yaml"), "--resume", str(run), "--compute", "cpu", "--quiet"])
    assert code in (0, 1)  # 1: a budget missed, which is a result, not a failure
    assert (run / "export" / "big.json").exists() and (run / "report.md").exists()
    (run / "report.md").unlink()
    assert cli(["report", str(run)]) == 0
    report = (run / "report.md").read_text()
    assert "small" in report and "big" in report
