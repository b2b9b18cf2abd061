"""What a drill may say: timeline verbs, expectation checks and `given` seeds, each with the
cerberus schema of its arguments. The drill loader validates against these (unknown keys are
errors) and the player dispatches to their handlers; modules register themselves on import."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Handler = Callable[..., Any]


@dataclass(frozen=True)
class Kind:
    name: str
    schema: dict[str, Any]  # cerberus schema of the item's own keys (besides at/do)
    handler: Handler
    doc: str
    apps: tuple[str, ...] = ()  # empty: every app
    example: str = ""  # one line of drill YAML using the word (docs/drills.md shows it)


STEPS: dict[str, Kind] = {}
CHECKS: dict[str, Kind] = {}
GIVENS: dict[str, Kind] = {}
# Words that shape other items rather than act or check: `each` on an expectation (the loader
# expands them; they are registered so the docs and `hlcore drill --coverage` list them too).
MODIFIERS: dict[str, Kind] = {}


def _register(table: dict[str, Kind], name: str, schema: dict[str, Any] | None, doc: str,
              apps: tuple[str, ...], example: str = "") -> Callable[[Handler], Handler]:
    def wrap(fn: Handler) -> Handler:
        if name in table:
            raise ValueError(f"{name} registered twice")
        table[name] = Kind(name, schema or {}, fn, doc, apps, example)
        return fn

    return wrap


def step(name: str, schema: dict[str, Any] | None = None, doc: str = "",
         apps: tuple[str, ...] = (), example: str = "") -> Callable[[Handler], Handler]:
    """A timeline verb: `{at, do: name, **schema keys}`; handler(player, args)."""
    return _register(STEPS, name, schema, doc, apps, example)


def check(name: str, schema: dict[str, Any], doc: str = "", apps: tuple[str, ...] = (),
          example: str = "") -> Callable[[Handler], Handler]:
    """An expectation: `{at?, name: value, **extra keys}`; `schema` holds `name` and the extras.
    handler(player, item) returns failure messages (empty: it held)."""
    return _register(CHECKS, name, schema, doc, apps, example)


def given(name: str, schema: dict[str, Any], doc: str = "", apps: tuple[str, ...] = (),
          example: str = "") -> Callable[[Handler], Handler]:
    """A `given:` key seeding storage or the venues before boot; handler(player, value)."""
    return _register(GIVENS, name, schema, doc, apps, example)


def modifier(name: str, schema: dict[str, Any], doc: str = "", example: str = "") -> Callable[[Handler], Handler]:
    """A key that shapes another item (the loader applies it); handler(item, value) -> items."""
    return _register(MODIFIERS, name, schema, doc, (), example)


def vocabulary() -> dict[str, dict[str, Kind]]:
    """Every word a drill may use, by table (what `--coverage` counts)."""
    load_all()
    return {"step": STEPS, "check": CHECKS, "given": GIVENS, "modifier": MODIFIERS}


def load_all() -> None:
    """Import every module that registers kinds (idempotent)."""
    import replay.checks
    import replay.givens
    import replay.steps
    import replay.vocab
    import replay.worlds.copytrade
    import replay.worlds.monitor

    for info in sorted(pkgutil.iter_modules(replay.vocab.__path__), key=lambda m: m.name):
        importlib.import_module(f"replay.vocab.{info.name}")
