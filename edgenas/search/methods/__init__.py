"""Differentiable search methods, one file each, registered by name in `METHODS`.

A method file defines its options (a `SearchOptions` model, variants as named options), its
`run_*` function on the shared bilevel loop, and a `METHOD` entry registered here with one line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from edgenas.core.registry import Registry


@dataclass(frozen=True)
class SearchMethod:
    """What `edgenas search` needs to start or resume a method.

    `aims_at`: "device" (searches under one device profile's budgets) or "teacher" (one
    search for all devices, distilling from a teacher). `legacy_options`: values that
    options added later take when a run made before them resumes.
    """

    name: str
    config: type
    run: Callable[..., dict[str, Any]]
    aims_at: Literal["device", "teacher"]
    legacy_options: Mapping[str, Any] = field(default_factory=dict)


METHODS: Registry[SearchMethod] = Registry("search method")
METHODS.register_lazy("dca", "edgenas.search.methods.dca:METHOD")
METHODS.register_lazy("dnad", "edgenas.search.methods.dnad:METHOD")
