"""The drill vocabulary as Markdown, generated from the registry, so docs/drills.md cannot drift
from what the loader accepts: `python -m replay.vocabulary --write docs/drills.md` refreshes the
block between the markers (a test checks it is current)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from replay.registry import CHECKS, GIVENS, MODIFIERS, STEPS, Kind, load_all

BEGIN, END = "<!-- vocabulary:begin -->", "<!-- vocabulary:end -->"


def _args(kind: Kind, skip: str = "") -> str:
    keys = [k for k in kind.schema if k != skip]
    return ", ".join(f"`{k}`" for k in keys) or "—"


def _table(title: str, kinds: dict[str, Kind], skip_self: bool) -> list[str]:
    lines = [f"### {title}", "", "| Name | Apps | Keys | Meaning | Example |", "|---|---|---|---|---|"]
    for name in sorted(kinds):
        kind = kinds[name]
        apps = ", ".join(kind.apps) or "all"
        doc = kind.doc.replace("|", "\\|").replace("\n", " ")
        example = f"`{kind.example}`".replace("|", "\\|") if kind.example else "—"
        lines.append(f"| `{name}` | {apps} | {_args(kind, name if skip_self else '')} | {doc} | {example} |")
    return [*lines, ""]


def markdown() -> str:
    load_all()
    lines = [BEGIN, "", "_Generated from the registry (`replay/registry.py`) by "
             "`python -m replay.vocabulary --write docs/drills.md`._", ""]
    lines += _table("Timeline verbs (`{at, do: VERB, ...keys}`)", STEPS, False)
    lines += _table("Expectations (`{at?, CHECK: value, ...keys}`)", CHECKS, True)
    lines += _table("Given (`given: {NAME: value}`)", GIVENS, False)
    lines += _table("Expectation modifiers (`{at, MODIFIER: value, CHECK: value, ...}`)", MODIFIERS, True)
    return "\n".join([*lines, END]) + "\n"


def refresh(text: str) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return head + markdown() + tail.lstrip("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=Path, help="Markdown file holding the markers to refresh")
    args = parser.parse_args()
    if args.write is None:
        sys.stdout.write(markdown())
        return
    args.write.write_text(refresh(args.write.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    main()
