"""edgenas runs on the oldest Python that pyproject.toml admits: vermin reads every module for
language features and standard-library names newer than that (e.g. typing.Self, 3.11)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_package_needs_nothing_newer_than_requires_python() -> None:
    pytest.importorskip("vermin")
    oldest = re.search(r'requires-python = ">=(\d+\.\d+)"', (REPO / "pyproject.toml").read_text())
    assert oldest is not None
    cmd = [
        sys.executable,
        "-c",
        "import sys, vermin; sys.exit(vermin.main())",
        "-q",
        "--no-tips",
        "--eval-annotations",
        "--violations",
    ]
    out = subprocess.run([*cmd, f"-t={oldest[1]}-", str(REPO / "edgenas")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
