"""Drill wallets by number: `address(7)` is a fixed, valid, lowercase address, and a selection
like "1-30", [1, 5, 9] or "all" names a set of them compactly (promtool-style series notation)."""

from __future__ import annotations

from typing import Any

SELECTION = {"type": ["string", "integer", "list"], "regex": r"^(all|\d+(-\d+)?(,\d+(-\d+)?)*)$"}


def address(i: int) -> str:
    return "0x" + f"{i:040x}"


def select(spec: Any, universe: int) -> list[int]:
    """Wallet numbers named by `spec` ("all" is 1..universe)."""
    if isinstance(spec, int):
        return [spec]
    if isinstance(spec, list):
        return sorted({n for item in spec for n in select(item, universe)})
    if spec == "all":
        return list(range(1, universe + 1))
    out: set[int] = set()
    for part in str(spec).split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return sorted(out)
