"""Resolve what a command runs against: which policy directory, which settings, which hashes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hlcore.config.hashing import config_hash
from hlcore.config.settings import Settings, load_settings
from hlcore.policy.loader import load_policy
from hlcore.policy.model import Policy
from hlcore.resources import resolve_policy_dir


@dataclass(frozen=True)
class Workspace:
    policy_dir: Path
    config_file: Path | None
    settings: Settings
    policy: Policy

    @property
    def config_hash(self) -> str:
        """Settings plus policy, secrets excluded (copytrader §7)."""
        return config_hash(self.settings, self.policy.to_dict())


def default_config_file(config: Path | None) -> Path | None:
    """`--config FILE`, else ./config/settings.yaml when present, else the packaged defaults."""
    if config is not None:
        return config
    local = Path.cwd() / "config" / "settings.yaml"
    return local if local.is_file() else None


def open_workspace(policy: Path | None = None, config: Path | None = None, mode: str | None = None) -> Workspace:
    settings = load_settings(default_config_file(config), mode=mode)
    policy_dir = resolve_policy_dir(policy)
    return Workspace(policy_dir, default_config_file(config), settings, load_policy(policy_dir, settings))
