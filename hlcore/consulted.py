"""What a run consulted: the policy parts and settings it read (for `hlcore diff`'s drill selection).

Off by default (one `is None` check per read). While `collecting()` is active, reads are noted by
kind: settings keys (`Settings.get`, a section read covers its subtree; `to_dict` is everything),
policy parts by name (`Policy.machines`, `reasons`, `lists`, … are `Noted` mappings: a lookup notes
the key, iterating or sizing notes every key), and fact kinds the engine evaluated. Reads made while
`paused()` (compiling a policy, building an engine: they touch every table whatever runs) are not
noted here; what a compiled table bakes in is attributed statically from the tables that ran.
The sink is process-wide (a drill's worker threads read too); pausing is per thread.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

ALL = "*"  # noted as a settings key: every setting was read (to_dict)

_sink: dict[str, set[str]] | None = None
_local = threading.local()


def note(kind: str, name: str) -> None:
    if _sink is not None and not getattr(_local, "paused", 0):
        _sink.setdefault(kind, set()).add(name)


def note_all(kind: str, names: Any) -> None:
    if _sink is not None and not getattr(_local, "paused", 0):
        _sink.setdefault(kind, set()).update(str(n) for n in names)


def active() -> bool:
    return _sink is not None and not getattr(_local, "paused", 0)


@contextmanager
def collecting() -> Iterator[dict[str, set[str]]]:
    """Note every read until the block ends; yields kind -> names."""
    global _sink
    previous, _sink = _sink, {}
    try:
        yield _sink
    finally:
        _sink = previous


@contextmanager
def paused() -> Iterator[None]:
    """Reads in this block (this thread) are not noted."""
    _local.paused = getattr(_local, "paused", 0) + 1
    try:
        yield
    finally:
        _local.paused -= 1


class Noted(dict):  # type: ignore[type-arg]
    """A policy catalog (machines, reasons, lists, …) that notes which entries are read.
    A plain dict for everything else (equality, hashing of the policy, pickling)."""

    __slots__ = ("kind",)

    def __init__(self, kind: str, items: Any = ()):
        super().__init__(items)
        self.kind = kind

    def __reduce__(self) -> Any:
        return (Noted, (self.kind, dict(self)))

    def __getitem__(self, key: Any) -> Any:
        if _sink is not None:
            note(self.kind, str(key))
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        if _sink is not None:
            note(self.kind, str(key))
        return super().get(key, default)

    def __contains__(self, key: Any) -> bool:
        if _sink is not None:
            note(self.kind, str(key))
        return super().__contains__(key)

    def _all(self) -> None:
        if _sink is not None:
            note_all(self.kind, super().keys())

    def __iter__(self) -> Iterator[Any]:
        self._all()
        return super().__iter__()

    def __len__(self) -> int:
        self._all()
        return super().__len__()

    def keys(self) -> Any:
        self._all()
        return super().keys()

    def values(self) -> Any:
        self._all()
        return super().values()

    def items(self) -> Any:
        self._all()
        return super().items()


def derived(fn: Callable[[Any], T]) -> Callable[[Any], T]:
    """Mark a pure function of the policy whose *result* is what the code uses (e.g. which machines
    raise alerts: it scans every machine, but only its answer matters). A call notes the function,
    not the catalog entries it walks; `hlcore diff` compares its result under both sides."""
    key = f"{fn.__module__}:{fn.__qualname__}"

    @functools.wraps(fn)
    def wrapper(policy: Any) -> T:
        note("derived", key)
        with paused():
            return fn(policy)

    return wrapper
