"""One `Registry` type for everything looked up by name: proxies, spaces, search methods, commands.

A registry maps a name to an object, or to a `"module:attribute"` path imported on first use
(so listing names, e.g. for a config's allowed values or a `--help`, imports nothing heavy).
A second registration of a name is a programming error and raises; an unknown name is a
`UserError` that lists the valid ones, the same message everywhere.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from edgenas.core.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> object, in registration order. `kind` names the entries in messages ("search space")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}
        self._lazy: set[str] = set()

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """`reg.register(name, obj)`, or `@reg.register(name)` as a decorator."""
        if obj is None:

            def deco(fn: T) -> T:
                self._add(name, fn)
                return fn

            return deco
        self._add(name, obj)
        return obj

    def register_lazy(self, name: str, target: str) -> None:
        """Register `module:attribute`, imported the first time `get(name)` asks for it."""
        if ":" not in target:
            raise ValueError(f"lazy target {target!r} must read 'module:attribute'")
        self._add(name, target)
        self._lazy.add(name)

    def _add(self, name: str, obj: T | str) -> None:
        if name in self._entries and self._entries[name] is not obj:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj

    def get(self, name: str) -> T:
        """The entry called `name`, or a `UserError` listing the valid names."""
        if name not in self._entries:
            raise UserError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}")
        if name in self._lazy:
            module, _, attr = str(self._entries[name]).partition(":")
            self._entries[name] = getattr(importlib.import_module(module), attr)
            self._lazy.discard(name)
        return self._entries[name]  # type: ignore[return-value]

    def names(self) -> tuple[str, ...]:
        """Registered names, in registration order."""
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
