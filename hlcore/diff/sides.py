"""The two sides of a diff: a git revision or a directory, loaded with the ordinary loaders.

A side is `machines/` + `rules/` + `config/settings.yaml` (rules read thresholds from settings),
so a threshold change shows up even when no policy file moved. A git revision is extracted into a
temporary directory with `git ls-tree` + `git cat-file`, read from the directory the command runs
in (its prefix inside the repository), so an operator repository with the policy at its top and
hlcore's own checkout behave the same.
"""

from __future__ import annotations

import subprocess
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from hlcore.config.hashing import config_hash
from hlcore.config.settings import Settings, load_settings
from hlcore.errors import BadInput, Problem
from hlcore.policy.loader import load_policy
from hlcore.policy.model import Policy

WORKTREE = "working tree"
POLICY_PATHS = ("machines", "rules", "config/settings.yaml")


@dataclass(frozen=True)
class Side:
    """One loaded side: where it came from, the files on disk, and the values they hold."""

    label: str  # "HEAD", "origin/main", "working tree", or the directory as given
    kind: str  # "git" or "dir"
    root: Path  # holds machines/ and rules/ (a temporary copy for a git revision)
    settings_file: Path | None  # None: the packaged defaults
    settings: Settings
    policy: Policy

    @cached_property
    def config_hash(self) -> str:
        """Hashed once per side (the diff asks for it per drill; it walks all settings and the policy)."""
        return config_hash(self.settings, self.policy.to_dict())

    def describe(self) -> dict[str, str]:
        return {"label": self.label, "kind": self.kind, "policy_hash": self.policy.hash,
                "config_hash": self.config_hash,
                "settings": "config/settings.yaml" if self.settings_file else "packaged defaults"}


def _git(args: list[str], cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, check=False)
    except OSError as exc:  # no git binary
        raise BadInput(Problem("git", "", f"cannot run git: {exc.strerror}")) from None


def git_context(cwd: Path) -> tuple[Path, str] | None:
    """(repository top level, prefix of cwd inside it), or None outside a work tree."""
    top = _git(["rev-parse", "--show-toplevel"], cwd)
    if top.returncode != 0:
        return None
    prefix = _git(["rev-parse", "--show-prefix"], cwd)
    return Path(top.stdout.decode().strip()), prefix.stdout.decode().strip()


def _is_revision(rev: str, cwd: Path) -> bool:
    return _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd).returncode == 0


def extract_revision(rev: str, cwd: Path, into: Path) -> Path:
    """Write the policy files of `rev` (as seen from cwd) under `into`; return `into`."""
    ctx = git_context(cwd)
    if ctx is None:
        raise BadInput(Problem(rev, "", "not a directory, and not in a git repository to read a revision from"))
    top, prefix = ctx
    wanted = [prefix + p for p in POLICY_PATHS]
    listing = _git(["ls-tree", "-r", "-z", "--full-tree", rev, "--", *wanted], top)
    if listing.returncode != 0:
        raise BadInput(Problem(rev, "", f"git ls-tree failed: {listing.stderr.decode().strip()}"))
    entries = []  # (object id, path inside the prefix)
    for record in listing.stdout.decode().split("\0"):
        if not record:
            continue
        meta, path = record.split("\t", 1)
        _mode, kind, oid = meta.split()
        if kind == "blob" and path.startswith(prefix):
            entries.append((oid, path[len(prefix):]))
    if entries:
        batch = _git(["cat-file", "--batch"], top, "".join(f"{oid}\n" for oid, _ in entries).encode())
        if batch.returncode != 0:
            raise BadInput(Problem(rev, "", f"git cat-file failed: {batch.stderr.decode().strip()}"))
        data, pos = batch.stdout, 0
        for _oid, rel in entries:
            header_end = data.index(b"\n", pos)
            size = int(data[pos:header_end].split()[2])
            body = data[header_end + 1: header_end + 1 + size]
            pos = header_end + 1 + size + 1
            target = into / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
    for sub in ("machines", "rules"):
        if not (into / sub).is_dir():
            where = f"{prefix}{sub}/" if prefix else f"{sub}/"
            raise BadInput(Problem(f"{rev}:{where}", "", f"revision {rev} has no {where}: not a policy revision"))
    return into


def _relabel(exc: BadInput, side: str, kind: str, tmp: Path | None = None) -> BadInput:
    """Name the side in every problem: `REV:machines/x.yaml:12: ...` or `DIR/machines/x.yaml:12: ...`."""
    fixed = []
    for p in exc.problems:
        file = p.file
        if tmp is not None and file.startswith(str(tmp)):
            file = file[len(str(tmp)):].lstrip("/")
        if not file:
            file = side
        elif file.startswith(("machines/", "rules/", "config/")) and (kind == "git" or file == p.file):
            file = f"{side}:{file}" if kind == "git" else str(Path(side) / file)
        fixed.append(Problem(file, p.path, p.message, p.line))
    return BadInput(fixed)


def load_side(spec: str | None, stack: ExitStack, cwd: Path | None = None) -> Side:
    """`spec` is a directory, a git revision, or None for the working tree (cwd)."""
    cwd = cwd or Path.cwd()
    if spec is None:
        return _load_dir(cwd, WORKTREE)
    path = Path(spec)
    if not path.is_absolute():
        path = cwd / path
    if path.is_dir():
        return _load_dir(path, spec)
    if git_context(cwd) is not None and _is_revision(spec, cwd):
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hlcore-diff-")))
        root = extract_revision(spec, cwd, tmp)
        settings_file = root / "config" / "settings.yaml"
        try:
            return _load(spec, "git", root, settings_file if settings_file.is_file() else None)
        except BadInput as exc:
            raise _relabel(exc, spec, "git", tmp) from None
    raise BadInput(Problem(spec, "", "neither a directory nor a git revision"
                           + ("" if git_context(cwd) is not None else " (not in a git repository)")))


def _load_dir(path: Path, label: str) -> Side:
    missing = [f"{sub}/" for sub in ("machines", "rules") if not (path / sub).is_dir()]
    if missing:
        raise BadInput(Problem(label, "", f"not a policy directory: missing {', '.join(missing)}"))
    settings_file = path / "config" / "settings.yaml"
    try:
        return _load(label, "dir", path, settings_file if settings_file.is_file() else None)
    except BadInput as exc:
        raise _relabel(exc, "." if label == WORKTREE else label, "dir") from None


def _load(label: str, kind: str, root: Path, settings_file: Path | None) -> Side:
    settings = load_settings(settings_file)
    policy = load_policy(root, settings)
    return Side(label, kind, root, settings_file, settings, policy)
