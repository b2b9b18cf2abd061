"""Declared venue fault episodes overlaid on a copy-trade backtest (`--faults FILE.yaml`).

`faults: [{at: ISO instant, kind: 429|5xx|timeout|lost|..., match: "POST /fapi/v1/order", venue,
for: 10m | times: N, status, retry_after, code, msg}]`: the drills' `Fault`, armed on the drills'
transport when the scripted clock reaches `at`, so retry-budget and reconcile rules are exercised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backtest.history.dataset import parse_instant
from hlcore.errors import BadInput
from hlcore.yamlsource import load_yaml
from replay.drill import duration_ms
from replay.transport import FAULT_KINDS, Fault

KINDS = tuple(k for k in FAULT_KINDS if k != "crash")  # a crash would end the backtest, not the app
_KEYS = {"at", "kind", "match", "venue", "op", "for", "times", "status", "retry_after", "code", "msg"}


def load_faults(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(start ms, Fault arguments) per episode, sorted by start; one clear error per bad entry."""
    src = load_yaml(path)
    items = src.data.get("faults") if isinstance(src.data, dict) else None
    if not isinstance(items, list):
        raise BadInput(src.problem(("faults",), "expected a list of fault episodes"))
    out = []
    for i, item in enumerate(items):
        where = ("faults", i)
        if not isinstance(item, dict) or not {"at", "kind"} <= set(item) or set(item) - _KEYS:
            keys = ", ".join(sorted(_KEYS))
            raise BadInput(src.problem(where, f"expected a mapping with at, kind and any of {keys}"))
        kind = str(item["kind"])
        if kind not in KINDS:
            raise BadInput(src.problem((*where, "kind"), f"expected one of {', '.join(KINDS)}, got '{kind}'"))
        at = parse_instant(str(item["at"]), f"{path}: faults[{i}].at")
        args: dict[str, Any] = {k: item[k] for k in ("match", "venue", "op", "status", "retry_after", "code", "msg")
                                if k in item}
        args["kind"], args["times"] = kind, item.get("times", 1)
        if "for" in item:
            span = duration_ms(item["for"])
            if span is None:
                raise BadInput(src.problem((*where, "for"), f"expected a duration like 10m, got {item['for']!r}"))
            args["times"], args["until_ms"] = None, at + span
        out.append((at, args))
    return sorted(out, key=lambda x: x[0])


def arm(transport: Any, episodes: list[tuple[int, dict[str, Any]]], now_ms: int) -> None:
    """Arm every episode whose start has come (called before each tick)."""
    while episodes and episodes[0][0] <= now_ms:
        _at, args = episodes.pop(0)
        transport.faults.append(Fault(**args))
