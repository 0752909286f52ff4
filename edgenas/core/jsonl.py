"""Append-only JSON-lines files: the event log of a run and the ground-truth file.

Each record is one line, flushed and fsynced before the call returns, so `kill -9` loses at
most the line being written; readers skip a torn last line instead of failing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record as a line and make it durable.

    After a torn last line (a writer killed mid-line) the record starts on a new line, so
    resuming does not glue it onto the torn one and lose it too.
    """
    line = json.dumps(record, default=str)
    with open(path, "a+b") as fh:
        if fh.tell() > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                line = "\n" + line
        fh.write((line + "\n").encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every complete record of a JSON-lines file ([] if it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # torn by an interrupted writer
    return records
