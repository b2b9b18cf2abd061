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


def copy_policy(dest: Path) -> Path:
    """machines/ and rules/ of the repository, copied under `dest` (validated with the default config)."""
    for sub in ("machines", "rules"):
        shutil.copytree(ROOT / sub, dest / sub)
    return dest


def mutate(policy: Path, file: str, old: str, new: str) -> int:
    """Replace `old`, which must occur exactly once, in `file`; return the 1-based line where it starts."""
    path = policy / file
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"fixture text not unique in {file}: {old!r}"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1
