"""Search spaces, one folder each, registered by name. `get_space(name)` returns a fresh instance.

A new space is a folder under `spaces/` (arch, network, supernet, cost terms, latency kernels)
plus one `SPACES.register_lazy` line here; the contract tests run over every registered space.
"""

from __future__ import annotations

from edgenas.core.registry import Registry
from edgenas.core.space import SearchSpace

SPACES: Registry[type[SearchSpace]] = Registry("search space")
SPACES.register_lazy("nb201", "edgenas.spaces.nb201:NB201Space")
SPACES.register_lazy("darts", "edgenas.spaces.darts:DartsSpace")
SPACES.register_lazy("mobile", "edgenas.spaces.mobile:MobileSpace")


def get_space(name: str) -> SearchSpace:
    """The search space called `name` (as given to `--space`)."""
    return SPACES.get(name)()
