"""Run directories: every command writes into one folder it can later resume from.

Layout: `config.yaml` (the resolved options), `events.jsonl` (progress, one JSON object a
line), checkpoints, `results.json` (schema-versioned) and plots. All writes but the event
log are atomic; the event log is append-only with one flushed line per event, so a
killed run loses at most the line being written.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from edgenas.core.atomic import atomic_write_json, atomic_write_text
from edgenas.core.errors import ResumeError
from edgenas.core.jsonl import append_jsonl, read_jsonl

RESULTS_SCHEMA_VERSION = 1


class RunDir:
    """One command's output folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, command: str, path: str | Path | None = None, root: str | Path = "runs") -> RunDir:
        """A new run folder: `path` if given (must be empty or absent), else `root/command-timestamp`."""
        if path is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            path = Path(root) / f"{command}-{stamp}"
            n = 1
            while path.exists():
                n += 1
                path = Path(root) / f"{command}-{stamp}-{n}"
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise ResumeError(
                f"run directory {path} already exists and is not empty; pick another --run-dir or pass --resume {path}"
            )
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    @classmethod
    def open_existing(cls, path: str | Path, command: str) -> RunDir:
        """An existing run folder to resume; it must have been made by `command`."""
        run = cls(path)
        if not run.path.is_dir():
            raise ResumeError(f"--resume {path}: no such run directory")
        cfg = run.path / "config.yaml"
        if not cfg.is_file():
            raise ResumeError(f"--resume {path}: {cfg} is missing, so this is not an edgenas run directory")
        made_by = run.read_config().get("command")
        if made_by != command:
            raise ResumeError(f"--resume {path}: that run was made by `edgenas {made_by}`, not `edgenas {command}`")
        return run

    def file(self, name: str) -> Path:
        """Path of a file inside the run (folders are created as needed)."""
        p = self.path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def relative(self, path: str | Path) -> str:
        """`path` relative to this run folder (`../teacher/model.pt`): what a run records next
        to an absolute path, so that a tree of runs moved together still finds its files."""
        return os.path.relpath(Path(path).resolve(), self.path.resolve())

    def locate(self, recorded: str, relative: str | None) -> str:
        """A file the run recorded: through its relative path when that exists from where the
        run folder is now (it was moved with its neighbours), else the recorded path."""
        if relative is not None and (self.path / relative).exists():
            return str((self.path / relative).resolve())
        return recorded

    def write_config(self, config: dict[str, Any]) -> None:
        """Record the resolved options the run was started with."""
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    def read_config(self) -> dict[str, Any]:
        """The options the run was started with."""
        try:
            data = yaml.safe_load((self.path / "config.yaml").read_text())
        except yaml.YAMLError as exc:
            raise ResumeError(f"{self.path / 'config.yaml'} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ResumeError(f"{self.path / 'config.yaml'} does not hold a mapping of options")
        return data

    def write_results(self, results: dict[str, Any], name: str = "results.json") -> Path:
        """Atomically write a results file, stamped with the schema version."""
        return atomic_write_json(self.path / name, {"schema_version": RESULTS_SCHEMA_VERSION, **results})

    def event(self, kind: str, **fields: Any) -> None:
        """Append one progress event (fsynced, so `kill -9` keeps it)."""
        append_jsonl(self.path / "events.jsonl", {"time": round(time.time(), 3), "event": kind, **fields})

    def events(self) -> list[dict[str, Any]]:
        """All complete events written so far (a torn last line is skipped)."""
        return read_jsonl(self.path / "events.jsonl")

    def __str__(self) -> str:
        return str(self.path)
