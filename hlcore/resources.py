"""Where the default policy and config live: inside the wheel, or at the top of a source checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def default_dir(name: str) -> Path:
    """The packaged default `machines`, `rules` or `config` folder.

    A wheel carries them under `hlcore/_defaults/`; an editable install or a plain checkout
    reads the top-level folders of the repository, so there is one copy of the defaults.
    """
    packaged = _PACKAGE / "_defaults" / name
    if packaged.is_dir():
        return packaged
    checkout = _PACKAGE.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"default {name}/ not found in the installation ({packaged}) or checkout ({checkout})")


def resolve_policy_dir(policy: Path | None) -> Path:
    """`--policy DIR`, else `./` when it holds machines/ and rules/, else the packaged defaults."""
    if policy is not None:
        return policy
    cwd = Path.cwd()
    if (cwd / "machines").is_dir() and (cwd / "rules").is_dir():
        return cwd
    return default_dir("machines").parent
