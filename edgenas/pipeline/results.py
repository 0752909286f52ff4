"""Assemble a pipeline run's `results.json` from its recorded jobs (also used by `edgenas report`)."""

from __future__ import annotations

from typing import Any

from edgenas.core.device import DeviceProfile
from edgenas.pipeline.config import RunConfig
from edgenas.search.methods import METHODS, search_job_key


def collect_results(cfg: RunConfig, profiles: list[DeviceProfile], state: Any) -> dict[str, Any]:
    """One row per device (model, accuracy, costs, budget checks, provenance) plus stage costs."""
    jobs = state.jobs
    teacher = jobs.get("teacher")
    devices = []
    for i, p in enumerate(profiles):
        sel = jobs[f"select/{p.name}"]
        trained = jobs[f"distill/{p.name}"]
        exported = jobs[f"export/{p.name}"]
        method = cfg.method_for(i)
        searched = jobs.get(search_job_key(METHODS.get(method), p.name)) if method in METHODS else None
        screened = jobs["screen"][p.name]
        devices.append(
            {
                "device": p.name,
                "description": p.description,
                "method": method,
                "selected_by": sel["source"],
                "arch": sel["arch"],
                "candidates_tried": sel["tried"],
                "search": _search_summary(searched),
                "screen": {"in_budget": screened["in_budget"], "top": screened["ranked"], "folder": screened["folder"]},
                "test_accuracy": trained["test_accuracy"],
                "train_seconds": trained["train_seconds"],
                "train_run": trained["run_dir"],
                "distilled_from": trained.get("teacher"),
                **exported,
            }
        )
    total = round(sum(state.seconds.values()), 2)
    return {
        "command": "run",
        "name": cfg.name,
        "dataset": cfg.dataset.model_dump(),
        "space": cfg.space.model_dump(),
        "seed": cfg.seed,
        "teacher": None
        if teacher is None
        else {
            "kind": cfg.teacher.kind,
            "arch": teacher["arch"],
            "test_accuracy": teacher["test_accuracy"],
            "train_seconds": teacher["train_seconds"],
            "cost": jobs.get("teacher/cost"),
            "run_dir": teacher["run_dir"],
        },
        "devices": devices,
        "stage_seconds": state.seconds,
        "total_seconds": total,
        "sessions": state.sessions,
        "all_pass": all(d["all_pass"] for d in devices),
    }


def _search_summary(searched: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the report says of a search: DCA's derived arch and its repairs, or DNAD's harvest."""
    if searched is None:
        return None
    out = {
        "method": searched["method"],
        "search_seconds": searched["search_seconds"],
        "epochs": searched["epochs"],
        "run_dir": searched["run_dir"],
    }
    out.update(METHODS.get(searched["method"]).summary(searched))
    return out
