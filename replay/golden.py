"""Golden journals: each drill's journal (every run) committed beside it as
`fixtures/<name>/golden.jsonl`, so a behaviour change shows up as a reviewed diff and the tests
replay each drill once. `hlcore drill --write-golden` (re)writes them."""

from __future__ import annotations

from pathlib import Path

from replay.drill import GOLDEN_FILE


def golden_path(directory: Path) -> Path:
    return directory / GOLDEN_FILE


def write_golden(directory: Path, journal: str) -> bool:
    """Write the drill's golden journal; True when its content changed."""
    path = golden_path(directory)
    old = path.read_text(encoding="utf-8") if path.is_file() else None
    if old == journal:
        return False
    path.write_text(journal, encoding="utf-8")
    return True


def first_difference(expected: str, actual: str) -> str | None:
    """None when equal; else where the journals first part: line number, both lines."""
    want, got = expected.splitlines(), actual.splitlines()
    for i, (a, b) in enumerate(zip(want, got, strict=False), 1):
        if a != b:
            return f"line {i} differs:\n  golden: {a}\n  replay: {b}"
    if len(want) != len(got):
        i = min(len(want), len(got)) + 1
        extra = want[i - 1] if len(want) > len(got) else got[i - 1]
        side = "golden" if len(want) > len(got) else "replay"
        return f"line {i}: only the {side} has it ({len(want)} vs {len(got)} lines):\n  {side}: {extra}"
    if expected != actual:
        return "the journals differ in line endings or a final newline"
    return None
