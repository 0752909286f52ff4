"""The proxy registry: each proxy module registers `fn(ctx) -> float` under its name at import.

The CLI, the search loop and the benchmark name proxies by string; a new proxy joins by
registering itself, without touching any caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from edgenas.core.registry import Registry

if TYPE_CHECKING:
    from edgenas.proxies.context import ProxyContext

ProxyFn = Callable[["ProxyContext"], float]

PROXIES: Registry[ProxyFn] = Registry("proxy")


def register(name: str) -> Callable[[ProxyFn], ProxyFn]:
    """Decorator: make `fn(ctx) -> float` available as proxy `name` (a duplicate name raises)."""
    return PROXIES.register(name)  # type: ignore[return-value]


def available() -> list[str]:
    """Sorted names of all registered proxies."""
    return sorted(PROXIES.names())


def get(name: str) -> ProxyFn:
    """The proxy function called `name`, or a `UserError` that lists the valid names."""
    if name not in PROXIES:  # sorted list in the message, as before
        from edgenas.core.errors import UserError

        raise UserError(f"unknown proxy {name!r}; choose one of {', '.join(available())}")
    return PROXIES.get(name)
