"""Name -> proxy function registry.

Why a registry: the CLI, the search loop and the benchmark name proxies by string, and each
proxy lives in its own module; registering at import time lets a new proxy join without
touching any caller, and one `get` gives every caller the same "unknown name" message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from edgenas.core.errors import UserError

if TYPE_CHECKING:
    from edgenas.proxies.context import ProxyContext

ProxyFn = Callable[["ProxyContext"], float]

_REGISTRY: dict[str, ProxyFn] = {}


def register(name: str) -> Callable[[ProxyFn], ProxyFn]:
    """Decorator: make `fn(ctx) -> float` available as proxy `name`.

    A second registration under the same name is a programming error (two modules would
    silently shadow each other), so it raises instead of overwriting.
    """

    def deco(fn: ProxyFn) -> ProxyFn:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"proxy {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


def available() -> list[str]:
    """Sorted names of all registered proxies."""
    return sorted(_REGISTRY)


def get(name: str) -> ProxyFn:
    """The proxy function called `name`, or a `UserError` that lists the valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown proxy {name!r}; choose one of {', '.join(available())}") from None
