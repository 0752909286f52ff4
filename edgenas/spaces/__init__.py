"""Search spaces. `get_space(name)` returns one by its CLI name."""

from __future__ import annotations

from edgenas.core.errors import UserError
from edgenas.core.space import SearchSpace

SPACES = ("nb201",)


def get_space(name: str) -> SearchSpace:
    """The search space called `name` (as given to `--space`)."""
    if name == "nb201":
        from edgenas.spaces.nb201 import NB201Space

        return NB201Space()
    raise UserError(f"--space {name!r}: unknown search space; choose one of {', '.join(SPACES)}")
