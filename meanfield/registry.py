"""One registry type for every kind of name in the package.

Activations, losses, integrators, backends, models, distributions, experiments, atlas entries and
theory boundaries are each a :class:`Registry`: ``get`` / ``list`` / ``register`` /
``unregister``, and an unknown name raises a ``ValueError`` that lists the valid ones and says how
to add one. Built-in entries can be *lazy*: a ``"module:attribute"`` string imported on first
``get`` (no work at import time). Built-ins cannot be replaced; user entries can, with
``overwrite=True``.

Example:
    >>> from meanfield.registry import Registry
    >>> colours = Registry("colour", hint="register one with colours.register")
    >>> colours.register("red", (1, 0, 0))
    (1, 0, 0)
    >>> colours.get("red")
    (1, 0, 0)
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Generic, Iterator, Optional, TypeVar

__all__ = ["Registry", "load_object"]

T = TypeVar("T")


def load_object(spec: str) -> Any:
    """Import ``"package.module:attribute"`` (attribute may be dotted).

    Raises:
        ValueError: the spec has no ``:``, the module cannot be imported or has no such attribute.
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"expected 'module:attribute', got {spec!r}")
    mod_name, attr = spec.split(":", 1)
    try:
        obj = importlib.import_module(mod_name)
    except ImportError as e:
        raise ValueError(f"cannot import module {mod_name!r} (from {spec!r}): {e}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"module {mod_name!r} has no attribute {attr!r} (from {spec!r})") from None
    return obj


class Registry(Generic[T]):
    """Names -> objects of one kind.

    Args:
        kind: what the entries are, for messages ("activation", "experiment", ...).
        hint: how a user adds one (appended to the unknown-name message).
        loader: optional function called once before the first lookup (registers built-ins
            lazily, e.g. by importing the modules that define them).
        check: optional validator ``check(name, obj)`` raising ``ValueError`` for a bad entry.
    """

    def __init__(self, kind: str, *, hint: str = "", loader: Optional[Callable[[], None]] = None,
                 check: Optional[Callable[[str, Any], None]] = None):
        self.kind = kind
        self.hint = hint
        self._loader = loader
        self._loaded = loader is None
        self._check = check
        self._entries: dict[str, Any] = {}
        self._builtin: set[str] = set()

    # ------------------------------------------------------------------ writing
    def register(self, name: str, obj: T, *, overwrite: bool = False, builtin: bool = False) -> T:
        """Add ``obj`` under ``name`` and return it.

        Args:
            name: the name used in configs and on the command line.
            obj: the entry, or a lazy ``"module:attribute"`` string (built-ins only).
            overwrite: replace an existing user entry of that name.
            builtin: mark as built-in (cannot be replaced or removed).

        Raises:
            ValueError: empty or non-string name, a taken name (without ``overwrite``), a built-in
                name, or an entry the registry's validator rejects.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if not builtin:
            self._ensure()
        if name in self._entries:
            if name in self._builtin:
                raise ValueError(f"{self.kind} {name!r} is built in and cannot be replaced; "
                                 "register yours under another name")
            if not overwrite:
                raise ValueError(f"{self.kind} {name!r} is already registered; pass "
                                 "overwrite=True to replace it")
        if self._check is not None and not (builtin and isinstance(obj, str)):
            self._check(name, obj)
        self._entries[name] = obj
        if builtin:
            self._builtin.add(name)
        return obj

    def unregister(self, name: str) -> None:
        """Remove a user entry.

        Raises:
            ValueError: unknown name, or a built-in.
        """
        self._ensure()
        if name in self._builtin:
            raise ValueError(f"{self.kind} {name!r} is built in and cannot be removed")
        if name not in self._entries:
            raise self._unknown(name)
        del self._entries[name]

    # ------------------------------------------------------------------ reading
    def get(self, name: str) -> T:
        """The entry of that name (lazy built-ins are imported now).

        Raises:
            ValueError: unknown name, listing the valid ones.
        """
        self._ensure()
        if not isinstance(name, str) or name not in self._entries:
            raise self._unknown(name)
        obj = self._entries[name]
        if isinstance(obj, str) and name in self._builtin and ":" in obj:
            obj = load_object(obj)
            if self._check is not None:
                self._check(name, obj)
            self._entries[name] = obj
        return obj

    def list(self) -> list[str]:
        """Every registered name, sorted."""
        self._ensure()
        return sorted(self._entries)

    def is_builtin(self, name: str) -> bool:
        self._ensure()
        return name in self._builtin

    def __contains__(self, name: object) -> bool:
        self._ensure()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        self._ensure()
        return len(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs, lazy entries loaded."""
        return [(n, self.get(n)) for n in self.list()]

    # ------------------------------------------------------------------ internals
    def _ensure(self) -> None:
        if not self._loaded:
            self._loaded = True
            self._loader()

    def _unknown(self, name) -> ValueError:
        valid = ", ".join(self.list()) or "(none registered)"
        msg = f"unknown {self.kind} {name!r}; valid: {valid}"
        return ValueError(msg + (f" ({self.hint})" if self.hint else ""))

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"
