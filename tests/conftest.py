"""Shared fixtures: the default policy, settings with overrides, and engines on a manual clock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from hlcore.config.settings import Settings, load_settings
from hlcore.engine.clock import ManualClock
from hlcore.engine.core import Engine
from hlcore.policy.loader import load_policy
from hlcore.policy.model import Policy

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_769_248_800_000  # 2026-01-24T10:00:00Z, a round minute


@pytest.fixture(scope="session")
def default_settings() -> Settings:
    return load_settings(None)


@pytest.fixture(scope="session")
def default_policy(default_settings: Settings) -> Policy:
    return load_policy(ROOT, default_settings)


@pytest.fixture
def settings_with(tmp_path: Path) -> Callable[[dict[str, Any]], Settings]:
    """Settings = packaged defaults + the given nested overrides (written as a real YAML file)."""

    def make(overrides: dict[str, Any]) -> Settings:
        path = tmp_path / f"settings-{abs(hash(repr(overrides)))}.yaml"
        path.write_text(yaml.safe_dump(overrides), encoding="utf-8")
        return load_settings(path)

    return make


@pytest.fixture
def make_engine(
    default_policy: Policy, default_settings: Settings, tmp_path: Path
) -> Callable[..., tuple[Engine, ManualClock]]:
    """`make_engine(config={...}, start_ms=T0, persisted=[...])` -> (started engine, its clock).

    With config overrides the policy is reloaded against those settings (config values are folded
    into the compiled conditions)."""

    def make(config: dict[str, Any] | None = None, start_ms: int = T0,
             persisted: list[dict[str, Any]] | None = None) -> tuple[Engine, ManualClock]:
        settings, policy = default_settings, default_policy
        if config:
            path = tmp_path / f"settings-{abs(hash(repr(config)))}.yaml"
            path.write_text(yaml.safe_dump(config), encoding="utf-8")
            settings = load_settings(path)
            policy = load_policy(ROOT, settings)
        clock = ManualClock(start_ms)
        engine = Engine(policy, settings, clock)
        engine.start(persisted or [])
        return engine, clock

    return make
