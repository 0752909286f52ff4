"""Differentiable search methods, one file each, registered by name in `METHODS`.

A method file defines its options (a `SearchOptions` model, variants as named options), its
`run_*` function on the shared bilevel loop, and a `METHOD` entry registered here with one line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from edgenas.core.registry import Registry


@dataclass(frozen=True)
class SearchMethod:
    """What `edgenas search` needs to start or resume a method.

    `aims_at`: "device" (searches under one device profile's budgets) or "teacher" (one
    search for all devices, distilling from a teacher). `legacy_options`: values that
    options added later take when a run made before them resumes. `candidates(result)`: the
    archs a finished search proposes, best first; `summary(result)`: what a run report says of it;
    `calibrate`: the method's calibration run, if it has one (same keywords as `run`).
    """

    name: str
    config: type
    run: Callable[..., dict[str, Any]]
    aims_at: Literal["device", "teacher"]
    candidates: Callable[[dict[str, Any]], list[str]]
    summary: Callable[[dict[str, Any]], dict[str, Any]]
    legacy_options: Mapping[str, Any] = field(default_factory=dict)
    calibrate: Callable[..., dict[str, Any]] | None = None  # `edgenas search --calibrate` (DCA-NAS's lookup graph)


def aimed_at(aim: str, names: Iterable[str]) -> list[str]:
    """Those of `names` that are registered methods aimed at `aim` ("device" or "teacher")."""
    return [n for n in names if n in METHODS and METHODS.get(n).aims_at == aim]


METHODS: Registry[SearchMethod] = Registry("search method")
METHODS.register_lazy("dca", "edgenas.search.methods.dca:METHOD")
METHODS.register_lazy("dnad", "edgenas.search.methods.dnad:METHOD")


def search_job_key(spec: SearchMethod, device: str) -> str:
    """The pipeline's job for a device's search: `search/<device>`, or `search/<method>` for a
    method that searches once for every device."""
    return f"search/{spec.name}" if spec.aims_at == "teacher" else f"search/{device}"
