"""No traceback on bad input or environment (issue 11 item 4): one clear line naming what and
where, exit 2; `hlcore --version`; the same safe default --mode everywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WALLET = "0x" + "ab" * 20


def hlcore(*args: str, cwd: Path, env_wallet: bool = True) -> subprocess.CompletedProcess[str]:
    """The installed console entry (`hlcore_cli:main`), as an operator runs it."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    if env_wallet:
        env["HYPERLIQUID_TARGET_WALLET"] = WALLET
    return subprocess.run([sys.executable, "-c", "from hlcore_cli import main; main()", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def one_error_line(result: subprocess.CompletedProcess[str], *says: str) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "╭" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for text in says:
        assert text in lines[0], lines[0]
    return lines[0]


def settings(tmp_path: Path, data: dict[str, object]) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_unwritable_db_path_parent_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder", encoding="utf-8")
    config = settings(tmp_path, {"db_path": str(blocker / "sub" / "ct.db")})
    one_error_line(hlcore("live", "--max-ticks", "1", "--config", str(config), cwd=tmp_path),
                   "db_path", str(blocker / "sub"))


def test_missing_database_driver_is_one_line(tmp_path: Path) -> None:
    config = settings(tmp_path, {"db_url": "postgresql+psycopg2://u:secret@127.0.0.1:1/x"})
    line = one_error_line(hlcore("live", "--max-ticks", "1", "--config", str(config), cwd=tmp_path),
                          "db_url", "psycopg2")
    assert "secret" not in line


@pytest.mark.parametrize(("args", "says"), [
    (("live", "--bogus"), ("--bogus", "hlcore live --help")),
    (("live", "--app", "monitor", "--mode", "garbage"), ("--mode", "garbage")),
    (("live", "--mode", "garbage"), ("--mode", "garbage", "dry-run")),
    (("live", "--job", "health"), ("--job", "--app monitor")),
    (("graph",), ("machine",)),
    (("ops", "preflight", "--mode", "garbage"), ("--mode", "garbage")),
], ids=["unknown-flag", "monitor-bad-mode", "bad-mode", "job-without-monitor", "missing-argument",
        "preflight-bad-mode"])
def test_bad_flags_are_one_line_exit_2(tmp_path: Path, args: tuple[str, ...], says: tuple[str, ...]) -> None:
    one_error_line(hlcore(*args, cwd=tmp_path), *says)


def test_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    result = hlcore("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"hlcore {version('hlcore')}"


def test_every_mode_option_defaults_to_the_safe_mode() -> None:
    """`live`, `ops preflight` and `ops validate-run` share one default: dry-run (never sends an order)."""
    import inspect

    from hlcore import cli
    from hlcore.config.settings import DEFAULT_MODE

    assert cli.DEFAULT_MODE == DEFAULT_MODE == "dry-run"
    for fn in (cli.live, cli.ops_preflight, cli.ops_validate_run):
        assert inspect.signature(fn).parameters["mode"].default == DEFAULT_MODE, fn.__name__


def test_live_with_the_venues_unreachable_is_loud_and_status_blocks(tmp_path: Path) -> None:
    """Acceptance (issue 11): `live --mode dry-run --max-ticks 3` offline prints each failed cycle
    on stderr with its cause and an ISO time; `ops status` then exits 1 (no fetch since boot)."""
    config = settings(tmp_path, {
        "db_path": str(tmp_path / "data" / "ct.db"), "app_log_path": str(tmp_path / "logs" / "app.log"),
        "metrics_log_path": str(tmp_path / "logs" / "metrics.log"),
        "ingest": {"hyperliquid": {"rest_url": "http://127.0.0.1:1/info",
                                   "retry": {"max_attempts": 1, "base_delay_ms": 1, "max_delay_ms": 1,
                                             "jitter_ms": 0}}},
        "execution": {"binance": {"base_url": "http://127.0.0.1:1"}},
        "orchestrator": {"loop_idle_sleep_sec": 0.1, "loop_max_idle_sleep_sec": 0.2}})
    live = hlcore("live", "--mode", "dry-run", "--max-ticks", "3", "--allow-create-db", "--config", str(config),
                  cwd=tmp_path)
    assert live.returncode == 0, live.stderr
    failed = [line for line in live.stderr.splitlines() if "ingest fetch failed" in line]
    assert len(failed) >= 2 and "NETWORK_ERROR" in failed[0] and "Traceback" not in live.stderr
    assert failed[0][:4].isdigit() and failed[0][10] == "T" and " WARNING " in failed[0]  # ISO-8601 UTC first
    status = hlcore("ops", "status", "--config", str(config), cwd=tmp_path)
    assert status.returncode == 1, status.stdout
    assert "blocker=no_ingest_since_boot" in status.stdout and "last_ingest_success_ms=\n" in status.stdout
