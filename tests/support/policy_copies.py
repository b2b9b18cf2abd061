"""Copies of the repository's policy for tests that edit it (hlcore diff, validation)."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def copy_repo_policy(dest: Path) -> Path:
    """machines/, rules/ and config/ of the repository, copied under `dest`."""
    for sub in ("machines", "rules", "config"):
        shutil.copytree(ROOT / sub, dest / sub)
    return dest


def edit(path: Path, old: str, new: str) -> None:
    """Replace the first `old` in a file; the text must be there (a test edits what it means to)."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
