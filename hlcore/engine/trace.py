"""Rule-row hit counting for coverage reports (`hlcore drill --coverage`).

An engine created while `collecting()` is active counts every rule row whose condition held, by
`table.row`. Off by default: the generated code then pays one `is not None` check per matched row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

_sink: Counter[str] | None = None


def current() -> Counter[str] | None:
    return _sink


@contextmanager
def collecting(hits: Counter[str] | None = None) -> Iterator[Counter[str]]:
    """Engines built inside this block count their matched rule rows into `hits`."""
    global _sink
    previous, _sink = _sink, (Counter() if hits is None else hits)
    try:
        yield _sink
    finally:
        _sink = previous
