"""Name -> factory registries for spaces, devices and backends, with helpful errors for unknown names."""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from ofakit.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names (and aliases) to objects that refuses duplicates and explains unknown names.

    Args:
        kind: what the registry holds, used in error messages ("search space", "backend").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator that registers an object under `name` and its aliases."""

        def decorator(obj: T) -> T:
            self.add(name, obj, aliases=aliases)
            return obj

        return decorator

    def add(self, name: str, obj: T, *, aliases: tuple[str, ...] = ()) -> None:
        """Register `obj` under `name`; raises ValueError if the name or an alias is taken."""
        for key in (name, *aliases):
            if key in self._items or key in self._aliases:
                raise ValueError(f"{self.kind} {key!r} is already registered")
        self._items[name] = obj
        for alias in aliases:
            self._aliases[alias] = name

    def canonical(self, name: str) -> str:
        """The registered name for `name` or one of its aliases."""
        if name in self._items:
            return name
        if name in self._aliases:
            return self._aliases[name]
        known = self.names()
        close = difflib.get_close_matches(name, [*known, *self._aliases], n=1)
        hint = f" Did you mean {self.canonical(close[0])!r}?" if close else ""
        raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {', '.join(known)}.{hint}")

    def get(self, name: str) -> T:
        """The object registered under `name` (or an alias); raises UnknownNameError with the known names."""
        return self._items[self.canonical(name)]

    def names(self) -> list[str]:
        """Registered names (without aliases), sorted."""
        return sorted(self._items)

    def aliases_of(self, name: str) -> list[str]:
        return sorted(a for a, n in self._aliases.items() if n == name)

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
