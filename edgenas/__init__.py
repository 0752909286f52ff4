"""edgenas: from a dataset and a list of edge devices to small, fast, trained networks.

Every command is also a function, importable from here (`from edgenas import screen`);
each is imported on first use, so `import edgenas` stays cheap (no torch).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# API name -> "module:function" that defines it, and the command it is
_API = {
    "run_pipeline": "edgenas.pipeline.run:run_pipeline",  # edgenas run
    "write_report": "edgenas.report.run_report:write_report",  # edgenas report
    "train_arch": "edgenas.train.train_arch:train_arch",  # edgenas train / distill / teacher
    "screen": "edgenas.search.screen:screen",  # edgenas screen
    # not `search`: that name is the subpackage edgenas.search
    "run_search": "edgenas.search.run:search",  # edgenas search
    "resume_search": "edgenas.search.run:resume_search",  # edgenas search --resume
    "run_retrieval": "edgenas.tasks.retrieval.stages:run_retrieval",  # edgenas retrieval
    "export_model": "edgenas.export.export_model:export_model",  # edgenas export
    "check_devices": "edgenas.cost.budget_check:check_devices",  # edgenas devices check
    "profile_device": "edgenas.cost.profile:profile_device",  # edgenas profile-device
    "check_latency_table": "edgenas.cost.profile:check_latency_table",  # edgenas profile-device --check
    "bench_truth": "edgenas.bench.truth:bench_truth",  # edgenas bench truth
    "bench_proxies": "edgenas.bench.proxy_bench:bench_proxies",  # edgenas bench proxies
    "bench_e2e": "edgenas.bench.e2e:bench_e2e",  # edgenas bench e2e
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        module, _, attr = _API[name].partition(":")
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value  # imported once
        return value
    raise AttributeError(f"module 'edgenas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
