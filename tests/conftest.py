"""Shared fixtures: the default policy, settings with overrides, and engines on a manual clock."""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
import typer.testing
import yaml

from hlcore.config.settings import Settings, load_settings
from hlcore.engine.clock import ManualClock
from hlcore.engine.core import Engine
from hlcore.policy.loader import load_policy
from hlcore.policy.model import Policy
from hlcore.storage.db import sqlite_url
from tests.support import pg

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_769_248_800_000  # 2026-01-24T10:00:00Z, a round minute


_CLICK_TREES: weakref.WeakKeyDictionary[typer.Typer, Any] = weakref.WeakKeyDictionary()


def _click_tree(app: typer.Typer) -> Any:
    """`typer.main.get_command`, once per app: typer rebuilds the whole click tree (every command's
    signature and type hints, ~0.1 s for `hlcore`'s 39 commands) on each `CliRunner.invoke`, most
    of a CLI test's time. No test changes an app's commands after building it; the drills' operator
    steps keep the tree the same way (replay/operator.py)."""
    tree = _CLICK_TREES.get(app)
    if tree is None:
        tree = _CLICK_TREES[app] = typer.main.get_command(app)
    return tree


typer.testing._get_command = _click_tree  # type: ignore[assignment]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `slow` first (stable: the rest keep their order). pytest-xdist hands tests to
    its workers in collection order; a long test collected near the end kept one worker busy
    alone after the other had run out of work (CI wall, issue 12). This only spreads them when
    tests are handed out one at a time (`.ci/run`'s `--maxschedchunk 1`): xdist's default first
    batch is a quarter of a worker's share of consecutive tests, which put every slow test on
    one worker."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The admin URL of a PostgreSQL server: HLCORE_TEST_PG_URL (set by .ci/run), else a throwaway
    cluster this session starts and stops (initdb/pg_ctl on PATH)."""
    url = os.environ.get(pg.TEST_PG_URL_ENV)
    if url:
        yield url
        return
    folder = Path(tempfile.mkdtemp(prefix="hlcore-pg-"))
    folder.chmod(0o755)  # the server runs as another user when we are root
    try:
        yield pg.start(folder / "cluster")
    finally:
        pg.stop(folder / "cluster")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_database(pg_server: str) -> str:
    """This test process's own database on the server (each xdist worker gets one)."""
    return pg.create_database(pg_server, f"hlcore_test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}")


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The worker's PostgreSQL database, emptied for this test."""
    pg.reset_database(pg_database)
    return pg_database


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database on each backend: a SQLite file, then the worker's PostgreSQL database."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "hlcore.db")
    return str(request.getfixturevalue("pg_url"))
