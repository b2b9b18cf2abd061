"""Config: defaults of both specs' §7, schema and cross-field checks, env, hashing, redaction."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

import hlcore.config.settings as settings_module
from hlcore.config.hashing import canonical_json, config_hash, redact_url, sha256_hex
from hlcore.config.settings import (
    Settings,
    check_env,
    load_env,
    load_settings,
    required_env,
    secret_env_status,
)
from hlcore.errors import BadInput
from hlcore.resources import default_dir

WALLET = "0x" + "ab12" * 10
SECRET = "s3cr3t-value-never-printed"


def write(tmp_path: Path, text: str, name: str = "settings.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors_of(path: Path, mode: str | None = None) -> list[str]:
    with pytest.raises(BadInput) as info:
        load_settings(path, mode=mode)
    return [str(p) for p in info.value.problems]


@pytest.fixture(scope="module")
def defaults() -> Settings:
    return load_settings(None)


# --------------------------------------------------------------------------- defaults

# Every key of copytrader §7 and monitor §7, as dotted leaf paths (maps listed as one key).
SPEC_KEYS = {
    # copytrader top level
    "config_version", "environment", "db_path", "db_url", "metrics_log_path", "app_log_path", "log_level",
    # ingest
    "ingest.maintenance_skip_gap", "ingest.backfill_window_ms", "ingest.cursor_overlap_ms",
    "ingest.dedup_ttl_seconds",
    "ingest.hyperliquid.enabled", "ingest.hyperliquid.rest_url", "ingest.hyperliquid.request_timeout_ms",
    "ingest.hyperliquid.symbol_map",
    "ingest.hyperliquid.rate_limit.max_requests", "ingest.hyperliquid.rate_limit.per_seconds",
    "ingest.hyperliquid.rate_limit.cooldown_seconds",
    "ingest.hyperliquid.retry.max_attempts", "ingest.hyperliquid.retry.base_delay_ms",
    "ingest.hyperliquid.retry.max_delay_ms", "ingest.hyperliquid.retry.jitter_ms",
    # decision
    "decision.strategy_version", "decision.replay_policy", "decision.max_stale_ms",
    "decision.max_future_ms",
    "decision.blacklist_symbols", "decision.price_source", "decision.price_max_stale_ms",
    "decision.price_fallback_enabled", "decision.price_fallback_max_stale_ms",
    "decision.price_failure_policy",
    "decision.filters_enabled", "decision.filters_failure_policy", "decision.expected_price_max_stale_ms",
    "decision.slippage_cap_pct",
    "decision.sizing.mode", "decision.sizing.fixed_qty", "decision.sizing.proportional_ratio",
    "decision.sizing.kelly_win_rate", "decision.sizing.kelly_edge", "decision.sizing.kelly_fraction",
    "decision.sizing.max_qty",
    # execution
    "execution.tif_seconds", "execution.order_poll_interval_sec", "execution.retry_budget_max_attempts",
    "execution.retry_budget_window_sec", "execution.unknown_poll_interval_sec", "execution.not_found_settle_sec",
    "execution.retry_budget_mode",
    "execution.market_fallback_enabled", "execution.market_fallback_threshold_pct",
    "execution.market_slippage_cap_pct",
    "execution.binance.enabled", "execution.binance.base_url", "execution.binance.request_timeout_ms",
    "execution.binance.recv_window_ms", "execution.binance.time_offset_warn_ms",
    "execution.binance.time_offset_max_age_ms", "execution.binance.exchange_info_enabled",
    "execution.binance.exchange_info_ttl_sec",
    "execution.binance.rate_limit.max_requests", "execution.binance.rate_limit.per_seconds",
    "execution.binance.rate_limit.cooldown_seconds",
    "execution.binance.retry.max_attempts", "execution.binance.retry.base_delay_ms",
    "execution.binance.retry.max_delay_ms", "execution.binance.retry.jitter_ms",
    # safety, orchestrator
    "safety.warn_threshold", "safety.critical_threshold", "safety.reconcile_interval_sec",
    "safety.snapshot_max_stale_ms", "safety.halt_recovery_noncritical_required",
    "safety.halt_recovery_window_sec", "safety.startup_policy", "safety.unknown_burst_count",
    "safety.unknown_burst_window_sec",
    "orchestrator.loop_idle_sleep_sec", "orchestrator.loop_max_idle_sleep_sec",
    "orchestrator.loop_active_sleep_sec", "orchestrator.loop_heartbeat_sec",
    "orchestrator.loop_tick_warn_sec", "orchestrator.max_events_per_tick", "orchestrator.writer_lock_wait_sec",
    # monitor
    "monitor.db_path", "monitor.db_url", "monitor.assets",
    "monitor.universe.leaderboard_url", "monitor.universe.window", "monitor.universe.size",
    "monitor.universe.refresh_hours", "monitor.universe.completeness_pct",
    "monitor.universe.churn_warn_pct",
    "monitor.universe.churn_fail_streak", "monitor.universe.retry_minutes",
    "monitor.universe.timeout_sec",
    "monitor.snapshots.info_url", "monitor.snapshots.interval_sec", "monitor.snapshots.max_concurrency",
    "monitor.snapshots.request_timeout_sec", "monitor.snapshots.retry_delays_sec",
    "monitor.snapshots.jitter_ms",
    "monitor.snapshots.cycle_deadline_sec", "monitor.snapshots.weight_budget_per_min",
    "monitor.snapshots.weight_headroom_pct",
    "monitor.health.healthy_max_age_sec", "monitor.health.stale_age_sec",
    "monitor.health.healthy_coverage_pct",
    "monitor.health.stale_coverage_pct", "monitor.health.nonnull_ok_pct",
    "monitor.health.nonnull_stale_pct",
    "monitor.health.recovery_clean_cycles", "monitor.health.eval_second",
    "monitor.dirty.collapse_ratio", "monitor.dirty.recovery_ratio", "monitor.dirty.signal_max_pct",
    "monitor.dirty.sustained_pct", "monitor.dirty.sustained_cycles",
    "monitor.signals.interval_sec", "monitor.signals.start_grace_sec", "monitor.signals.epsilon_abs",
    "monitor.signals.epsilon_rel", "monitor.signals.epsilon_lookback_hours", "monitor.signals.trend_band",
    "monitor.signals.trend_periods", "monitor.signals.dispersion_min_ratios",
    "monitor.signals.ratio_clamp",
    "monitor.signals.missing_warn_pct", "monitor.signals.missing_error_pct",
    "monitor.signals.snapshot_slots_ok",
    "monitor.signals.snapshot_slots_min",
    "monitor.alerts.exit_fire_pct", "monitor.alerts.exit_reset_pct", "monitor.alerts.exit_cooldown_min",
    "monitor.alerts.regime_periods", "monitor.alerts.regime_cooldown_min", "monitor.alerts.daily_cap",
    "monitor.alerts.daily_window_hours", "monitor.alerts.system_stale_min",
    "monitor.dashboard.refresh_sec", "monitor.dashboard.signal_max_age_sec",
    "monitor.dashboard.recent_alerts_limit", "monitor.dashboard.alert_text_chars",
    "monitor.dashboard.history_hours", "monitor.dashboard.chart_lines", "monitor.dashboard.playbook_colours",
    "monitor.dashboard.positioning.flat_grey_pct", "monitor.dashboard.positioning.neutral_long_pct",
    "monitor.dashboard.positioning.side_pct", "monitor.dashboard.positioning.concentration_pct",
}  # fmt: skip
MAP_KEYS = {"ingest.hyperliquid.symbol_map", "monitor.signals.epsilon_abs", "monitor.dashboard.chart_lines",
            "monitor.dashboard.playbook_colours"}


def test_every_spec_key_is_present_and_nothing_else(defaults: Settings) -> None:
    keys = set(defaults.keys())
    top_level = {k for k in keys if not any(k.startswith(m + ".") for m in MAP_KEYS)}
    assert top_level == SPEC_KEYS


DEFAULTS = [
    ("config_version", "0.1"),
    ("environment", "production"),
    ("db_path", "data/hlcore.db"),
    ("db_url", None),
    ("log_level", "INFO"),
    ("ingest.maintenance_skip_gap", False),
    ("ingest.backfill_window_ms", 600000),
    ("ingest.cursor_overlap_ms", 5000),
    ("ingest.dedup_ttl_seconds", 86400),
    ("ingest.hyperliquid.rest_url", "https://api.hyperliquid.xyz/info"),
    ("ingest.hyperliquid.symbol_map", {"BTC": "BTCUSDT"}),
    ("ingest.hyperliquid.symbol_map.BTC", "BTCUSDT"),
    ("ingest.hyperliquid.rate_limit.max_requests", 10),
    ("ingest.hyperliquid.retry.max_attempts", 5),
    ("ingest.hyperliquid.retry.base_delay_ms", 250),
    ("ingest.hyperliquid.retry.max_delay_ms", 5000),
    ("ingest.hyperliquid.retry.jitter_ms", 150),
    ("decision.strategy_version", "v1"),
    ("decision.replay_policy", "close_only"),
    ("decision.max_stale_ms", 0),
    ("decision.max_future_ms", 2000),
    ("decision.blacklist_symbols", []),
    ("decision.price_failure_policy", "allow_without_price"),
    ("decision.filters_enabled", True),
    ("decision.slippage_cap_pct", 0.0),
    ("decision.sizing.mode", "proportional"),
    ("decision.sizing.proportional_ratio", 0.001),
    ("decision.sizing.kelly_fraction", 1.0),
    ("decision.sizing.max_qty", 0.1),
    ("execution.tif_seconds", 5),
    ("execution.retry_budget_max_attempts", 3),
    ("execution.retry_budget_window_sec", 30),
    ("execution.retry_budget_mode", "ARMED_SAFE"),
    ("execution.market_slippage_cap_pct", 0.005),
    ("execution.binance.base_url", "https://fapi.binance.com"),
    ("execution.binance.recv_window_ms", 5000),
    ("execution.binance.exchange_info_ttl_sec", 300),
    ("execution.binance.rate_limit.cooldown_seconds", 5),
    ("execution.binance.retry.max_delay_ms", 5000),
    ("safety.warn_threshold", 0.001),
    ("safety.critical_threshold", 0.01),
    ("safety.reconcile_interval_sec", 60),
    ("safety.snapshot_max_stale_ms", 30000),
    ("safety.halt_recovery_noncritical_required", 3),
    ("safety.startup_policy", "manual"),
    ("orchestrator.loop_max_idle_sleep_sec", 10),
    ("orchestrator.loop_tick_warn_sec", 30),
    ("orchestrator.writer_lock_wait_sec", 5),
    ("monitor.db_path", "data/monitor.db"),
    ("monitor.db_url", None),
    ("monitor.assets", ["HYPE", "BTC", "ETH"]),
    ("monitor.universe.size", 200),
    ("monitor.universe.completeness_pct", 90),
    ("monitor.universe.churn_warn_pct", 30),
    ("monitor.snapshots.retry_delays_sec", [0.5, 1.5, 4.0]),
    ("monitor.snapshots.cycle_deadline_sec", 55),
    ("monitor.snapshots.weight_budget_per_min", 1200),
    ("monitor.snapshots.weight_headroom_pct", 80),
    ("monitor.health.healthy_max_age_sec", 120),
    ("monitor.health.stale_age_sec", 600),
    ("monitor.health.healthy_coverage_pct", 90),
    ("monitor.health.stale_coverage_pct", 80),
    ("monitor.health.nonnull_ok_pct", 80),
    ("monitor.health.nonnull_stale_pct", 60),
    ("monitor.dirty.collapse_ratio", 0.01),
    ("monitor.dirty.recovery_ratio", 0.5),
    ("monitor.dirty.sustained_pct", 20),
    ("monitor.signals.epsilon_abs.HYPE", 0.01),
    ("monitor.signals.epsilon_abs.BTC", 0.0001),
    ("monitor.signals.epsilon_abs.ETH", 0.001),
    ("monitor.signals.missing_error_pct", 25),
    ("monitor.alerts.exit_fire_pct", 25),
    ("monitor.alerts.exit_reset_pct", 20),
    ("monitor.alerts.daily_cap", 4),
    ("monitor.alerts.system_stale_min", 10),
    ("monitor.dashboard.refresh_sec", 30),
    ("monitor.dashboard.history_hours", [6, 24]),
]


@pytest.mark.parametrize(("dotted", "expected"), DEFAULTS)
def test_default_value(defaults: Settings, dotted: str, expected: Any) -> None:
    assert defaults.get(dotted) == expected
    assert type(defaults.get(dotted)) is type(expected)


def test_defaults_also_pass_the_live_mode_checks() -> None:
    assert load_settings(None, mode="live").to_dict() == load_settings(None).to_dict()


def test_settings_access(defaults: Settings) -> None:
    assert defaults.has("safety.warn_threshold")
    assert not defaults.has("safety.nope")
    with pytest.raises(
        KeyError, match=re.escape("unknown setting 'safety.nope': no key 'nope' under 'safety'")
    ):
        defaults.get("safety.nope")
    keys = defaults.keys()
    assert keys == sorted(keys)
    assert "monitor.signals.epsilon_abs" in keys and "monitor.signals.epsilon_abs.BTC" in keys
    assert "ingest.hyperliquid" not in keys  # sections are not settings
    defaults.get("ingest.hyperliquid.symbol_map")["ETH"] = "ETHUSDT"  # a copy: no mutation leaks
    assert defaults.get("ingest.hyperliquid.symbol_map") == {"BTC": "BTCUSDT"}
    assert defaults.to_dict() == defaults.data and defaults.to_dict() is not defaults.data


# --------------------------------------------------------------------------- user files


def test_partial_user_file_overrides_only_that_key(tmp_path: Path, defaults: Settings) -> None:
    settings = load_settings(write(tmp_path, "ingest:\n  backfill_window_ms: 900000\n"))
    assert settings.get("ingest.backfill_window_ms") == 900000
    keys = defaults.keys()
    changed = [k for k in keys if settings.get(k) != defaults.get(k)]
    assert changed == ["ingest.backfill_window_ms"]
    assert settings.file == str(tmp_path / "settings.yaml")


@pytest.mark.parametrize(
    ("text", "dotted", "expected"),
    [
        # a free-keyed map is replaced whole, so a default symbol can be dropped
        ("ingest: {hyperliquid: {symbol_map: {ETH: ETHUSDT}}}", "ingest.hyperliquid.symbol_map",
         {"ETH": "ETHUSDT"}),
        # a fixed-key map merges per entry
        ("monitor: {signals: {epsilon_abs: {BTC: 0.5}}}", "monitor.signals.epsilon_abs",
         {"HYPE": 0.01, "BTC": 0.5, "ETH": 0.001}),
        ("monitor: {dashboard: {history_hours: [1]}}", "monitor.dashboard.history_hours", [1]),
        ("safety:\n", "safety.warn_threshold", 0.001),  # an empty section overrides nothing
        ("", "safety.warn_threshold", 0.001),  # an empty file is the defaults
        ("db_url: postgresql://u:p@db/hl", "db_url", "postgresql://u:p@db/hl"),
    ],
)  # fmt: skip
def test_merge(tmp_path: Path, text: str, dotted: str, expected: Any) -> None:
    assert load_settings(write(tmp_path, text + "\n")).get(dotted) == expected


BAD = [
    # unknown keys, at any depth, with the user's file and line
    ("ingest:\n  bogus_key: 1\n", "2: ingest.bogus_key: unknown key"),
    ("foo: 1\n", "1: foo: unknown key"),
    ("monitor:\n  health:\n    stale_age: 600\n", "3: monitor.health.stale_age: unknown key"),
    ("ingest:\n  hyperliquid:\n    retry: {tries: 3}\n", "3: ingest.hyperliquid.retry.tries: unknown key"),
    # wrong types and values name the path
    ("ingest:\n  backfill_window_ms: ten\n",
     "2: ingest.backfill_window_ms: expected integer, got str 'ten'"),
    ("safety:\n  warn_threshold: true\n", "2: safety.warn_threshold: expected number, got bool True"),
    ("config_version: 0.1\n", "1: config_version: expected string, got float 0.1"),
    ("environment: prod\n", "1: environment: must be one of ['local', 'staging', 'production'], got 'prod'"),
    ("monitor:\n  universe:\n    size: 0\n", "3: monitor.universe.size: must be >= 1, got 0"),
    ("monitor:\n  health:\n    eval_second: 60\n", "3: monitor.health.eval_second: must be <= 59, got 60"),
    ("safety: 3\n", "1: safety: expected dict, got int 3"),
    ("log_level: null\n", "1: log_level: must not be null"),
    ("monitor:\n  assets: [HYPE, BTC]\n", "2: monitor.assets: must have exactly 3 items, got 2"),
    ("monitor:\n  snapshots:\n    retry_delays_sec: [0.5, -1]\n",
     "3: monitor.snapshots.retry_delays_sec[1]: must be >= 0, got -1"),
    ("db_url: mysql://u:pw@h/db\n", "1: db_url: must match ^postgresql(\\+[a-z0-9]+)?://[^\\s]+$, "
     "got 'mysql://u:***@h/db'"),
    # cross-field checks
    ("safety:\n  warn_threshold: 0.02\n",
     "2: safety.warn_threshold: must be less than safety.critical_threshold (0.01), got 0.02"),
    ("safety:\n  warn_threshold: 0.01\n",
     "2: safety.warn_threshold: must be less than safety.critical_threshold (0.01), got 0.01"),
    # the user wrote the right-hand side: reported there, phrased from that side
    ("safety:\n  critical_threshold: 0.0005\n",
     "2: safety.critical_threshold: must be greater than safety.warn_threshold (0.001), got 0.0005"),
    ("safety:\n  warn_threshold: 0\n", "2: safety.warn_threshold: must be greater than 0, got 0"),
    ("monitor:\n  health:\n    healthy_max_age_sec: 600\n",
     "3: monitor.health.healthy_max_age_sec: must be less than monitor.health.stale_age_sec (600)"),
    ("monitor:\n  health:\n    stale_coverage_pct: 95\n",
     "3: monitor.health.stale_coverage_pct: must be less than monitor.health.healthy_coverage_pct"),
    ("monitor:\n  health:\n    nonnull_stale_pct: 80\n",
     "3: monitor.health.nonnull_stale_pct: must be less than monitor.health.nonnull_ok_pct (80)"),
    ("monitor:\n  alerts:\n    exit_reset_pct: 30\n",
     "3: monitor.alerts.exit_reset_pct: must be less than monitor.alerts.exit_fire_pct (25)"),
    ("monitor:\n  dirty:\n    signal_max_pct: 20\n",
     "3: monitor.dirty.signal_max_pct: must be less than monitor.dirty.sustained_pct (20)"),
    ("monitor:\n  snapshots:\n    retry_delays_sec: [4.0, 1.5]\n",
     "3: monitor.snapshots.retry_delays_sec: must be strictly ascending, got [4.0, 1.5]"),
    ("monitor:\n  universe:\n    size: 500\n",
     "3: monitor.universe.size: monitor.universe.size * 2 (1000) must be at most "
     "monitor.snapshots.weight_headroom_pct% of monitor.snapshots.weight_budget_per_min (960.0)"),
    ("ingest:\n  hyperliquid:\n    retry: {base_delay_ms: 6000}\n",
     "3: ingest.hyperliquid.retry.base_delay_ms: must be at most ingest.hyperliquid.retry.max_delay_ms"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_user_file(tmp_path: Path, text: str, expected: str) -> None:
    errors = errors_of(write(tmp_path, text))
    assert any(e.startswith(f"{tmp_path}/settings.yaml:{expected}") for e in errors), errors


def test_all_problems_are_collected_in_one_error(tmp_path: Path) -> None:
    text = "ingest:\n  bogus: 1\nsafety:\n  warn_threshold: 0.5\nmonitor:\n  universe: {size: x}\n"
    errors = errors_of(write(tmp_path, text))
    assert [e.split(": ", 2)[1] for e in errors] == [
        "ingest.bogus",
        "safety.warn_threshold",
        "monitor.universe.size",
    ]


def test_a_rejected_value_is_not_reported_again_by_the_checks(tmp_path: Path) -> None:
    errors = errors_of(write(tmp_path, "monitor:\n  health:\n    stale_age_sec: soon\n"))
    assert len(errors) == 1 and "expected integer" in errors[0]


@pytest.mark.parametrize(
    ("text", "mode", "expected"),
    [
        (
            "ingest: {backfill_window_ms: 0}",
            "live",
            "ingest.backfill_window_ms: must be greater than 0, got 0",
        ),
        ("decision: {filters_enabled: false}", "live", "decision.filters_enabled: must be true, got False"),
        (
            "execution: {retry_budget_max_attempts: 0}",
            "live",
            "execution.retry_budget_max_attempts: must be greater",
        ),
    ],
)
def test_live_only_checks(tmp_path: Path, text: str, mode: str, expected: str) -> None:
    path = write(tmp_path, text + "\n")
    for other in (None, "dry-run", "backfill-only"):
        load_settings(path, mode=other)
    assert any(expected in e for e in errors_of(path, mode)), errors_of(path, mode)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("log_level: INFO\n  bad: indent\n", ":2: YAML syntax error"),
        ("- a\n- b\n", ":1: top level must be a mapping of settings, got list"),
        ("safety: {warn_threshold: 1}\nsafety: {}\n", ":2: safety: duplicate key 'safety'"),
    ],
)
def test_unreadable_file_is_bad_input(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in errors_of(write(tmp_path, text))[0]


def test_missing_file_is_bad_input(tmp_path: Path) -> None:
    assert "cannot read file" in errors_of(tmp_path / "nope.yaml")[0]


def test_unknown_mode_is_bad_input(defaults: Settings) -> None:
    with pytest.raises(BadInput, match="unknown run mode 'paper'"):
        load_settings(None, mode="paper")
    with pytest.raises(BadInput, match="unknown run mode 'paper'"):
        required_env("paper", defaults)


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        ("{lt: [safety.warn_threshold, safety.nope]}", "refers to unknown setting 'safety.nope'"),
        ("{lt: [safety.warn_threshold]}", "lt takes two operands"),
        ("{between: [safety.warn_threshold]}", "needs exactly one of"),
        ("{positive: [monitor.assets]}", "check cannot be evaluated"),
        ("{is_true: [log_level], modes: [paper]}", "modes must be a list of"),
    ],
)
def test_a_broken_check_names_the_schema_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, check: str, expected: str
) -> None:
    shipped = default_dir("config")
    (tmp_path / "settings.yaml").write_text((shipped / "settings.yaml").read_text(encoding="utf-8"))
    schema = (shipped / "schema.yaml").read_text(encoding="utf-8")
    schema = schema.replace("\nchecks:\n", f"\nchecks:\n  - {check}\n", 1)
    (tmp_path / "schema.yaml").write_text(schema, encoding="utf-8")
    monkeypatch.setattr("hlcore.config.settings.default_dir", lambda name: tmp_path)
    with pytest.raises(BadInput) as info:
        load_settings(None)
    line = schema.splitlines().index(f"  - {check}") + 1
    assert str(info.value).startswith(f"{tmp_path / 'schema.yaml'}:{line}: checks[0]: ")
    assert expected in str(info.value)


def test_python_holds_no_defaults() -> None:
    """Defaults live in settings.yaml only: none of these spec values may be spelled in hlcore/config."""
    source = "".join(
        p.read_text(encoding="utf-8") for p in Path(settings_module.__file__).parent.glob("*.py")
    )
    for literal in ("600000", "86400", "0.001", "0.01", "120", "600", "close_only", "ARMED_SAFE", "BTCUSDT"):
        assert literal not in source, literal


# --------------------------------------------------------------------------- environment


@pytest.mark.parametrize(
    ("mode", "text", "expected"),
    [
        ("live", "", ["HYPERLIQUID_TARGET_WALLET", "BINANCE_API_KEY", "BINANCE_API_SECRET"]),
        ("live", "execution: {binance: {enabled: false}}", ["HYPERLIQUID_TARGET_WALLET"]),
        ("live", "ingest: {hyperliquid: {enabled: false}}", ["BINANCE_API_KEY", "BINANCE_API_SECRET"]),
        ("dry-run", "", ["HYPERLIQUID_TARGET_WALLET"]),
        ("backfill-only", "", ["HYPERLIQUID_TARGET_WALLET"]),
    ],
)
def test_required_env(tmp_path: Path, mode: str, text: str, expected: list[str]) -> None:
    assert required_env(mode, load_settings(write(tmp_path, text + "\n"))) == expected


@pytest.mark.parametrize(
    ("mode", "environ", "missing"),
    [
        ("live", {"HYPERLIQUID_TARGET_WALLET": WALLET, "BINANCE_API_KEY": SECRET}, ["BINANCE_API_SECRET"]),
        ("live", {"HYPERLIQUID_TARGET_WALLET": WALLET, "BINANCE_API_KEY": SECRET, "BINANCE_API_SECRET": ""},
         ["BINANCE_API_SECRET"]),
        ("live", {}, ["HYPERLIQUID_TARGET_WALLET", "BINANCE_API_KEY", "BINANCE_API_SECRET"]),
        ("dry-run", {"HYPERLIQUID_TARGET_WALLET": WALLET}, []),
        ("backfill-only", {"HYPERLIQUID_TARGET_WALLET": WALLET}, []),
        ("dry-run", {}, ["HYPERLIQUID_TARGET_WALLET"]),
        ("dry-run", {"HYPERLIQUID_TARGET_WALLET": "0x1234"}, ["HYPERLIQUID_TARGET_WALLET"]),
        ("dry-run", {"HYPERLIQUID_TARGET_WALLET": WALLET + "0"}, ["HYPERLIQUID_TARGET_WALLET"]),
    ],
)  # fmt: skip
def test_check_env(defaults: Settings, mode: str, environ: dict[str, str], missing: list[str]) -> None:
    problems = check_env(mode, defaults, environ)
    assert [p.path for p in problems] == missing
    assert all(SECRET not in str(p) and "0x1234" not in str(p) for p in problems)


def test_secret_status_never_shows_a_value() -> None:
    status = secret_env_status(
        ["BINANCE_API_SECRET", "BINANCE_API_KEY", "EMPTY"], {"BINANCE_API_SECRET": SECRET, "EMPTY": ""}
    )
    assert status == {
        "BINANCE_API_SECRET": f"SET (len {len(SECRET)})",
        "BINANCE_API_KEY": "UNSET",
        "EMPTY": "SET (len 0)",
    }
    assert SECRET not in repr(status)


def test_load_env_keeps_variables_already_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HLCORE_TEST_SET", "from-shell")
    monkeypatch.delenv("HLCORE_TEST_NEW", raising=False)
    env = write(tmp_path, "HLCORE_TEST_SET=from-file\nHLCORE_TEST_NEW=from-file\n", ".env")
    try:
        load_env(env)
        assert os.environ["HLCORE_TEST_SET"] == "from-shell"
        assert os.environ["HLCORE_TEST_NEW"] == "from-file"
    finally:
        os.environ.pop("HLCORE_TEST_NEW", None)
    monkeypatch.chdir(tmp_path)  # default: the working directory's .env
    (tmp_path / ".env").write_text("HLCORE_TEST_CWD=1\n", encoding="utf-8")
    monkeypatch.delenv("HLCORE_TEST_CWD", raising=False)
    assert load_env() is True and os.environ.pop("HLCORE_TEST_CWD") == "1"
    (tmp_path / ".env").unlink()
    assert load_env() is False  # no .env is fine
    with pytest.raises(BadInput, match="env file not found"):
        load_env(tmp_path / "missing.env")


# --------------------------------------------------------------------------- hashing


def test_hash_is_stable_across_key_order(tmp_path: Path) -> None:
    a = write(
        tmp_path, "safety: {warn_threshold: 0.002, critical_threshold: 0.02}\nlog_level: DEBUG\n", "a.yaml"
    )
    b = write(
        tmp_path, "log_level: DEBUG\nsafety: {critical_threshold: 0.02, warn_threshold: 0.002}\n", "b.yaml"
    )
    policy = {"rules": [{"id": "r1", "lt": 80}], "machines": {"safety": {"initial": "ARMED_SAFE"}}}
    reordered = {"machines": {"safety": {"initial": "ARMED_SAFE"}}, "rules": [{"lt": 80, "id": "r1"}]}
    assert config_hash(load_settings(a), policy) == config_hash(load_settings(b), reordered)


@pytest.mark.parametrize(
    "text",
    [
        "safety: {warn_threshold: 0.002}",
        "monitor: {signals: {epsilon_abs: {BTC: 0.0002}}}",
        "decision: {blacklist_symbols: [X]}",
    ],
)
def test_hash_changes_when_one_value_changes(tmp_path: Path, defaults: Settings, text: str) -> None:
    base = config_hash(defaults, {})
    assert config_hash(load_settings(write(tmp_path, text + "\n")), {}) != base
    assert config_hash(defaults, {"x": 1}) != base


def test_hash_ignores_int_vs_float_spelling(tmp_path: Path, defaults: Settings) -> None:
    path = write(tmp_path, "decision: {sizing: {kelly_fraction: 1}}\n")
    assert config_hash(load_settings(path), {}) == config_hash(defaults, {})


def test_hash_excludes_secrets_and_url_credentials() -> None:
    def settings(**extra: Any) -> Settings:
        return Settings(data={"db_url": "postgresql://hl:pw1@db/hl", "a": 1, **extra})

    assert config_hash(settings(), {}) == config_hash(
        Settings(data={"db_url": "postgresql://hl:pw2@db/hl", "a": 1}), {}
    )
    assert config_hash(settings(api_key="k", nested={"client_secret": "s"}), {}) == config_hash(
        settings(nested={}), {}
    )
    assert config_hash(Settings(data={"db_url": "postgresql://other:pw@db/hl"}), {}) != config_hash(
        Settings(data={"db_url": "postgresql://hl:pw@db/hl"}), {}
    )


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"b": 1, "a": [1.5, None, True]}, '{"a":[1.5,null,true],"b":1}'),
        ({"x": 1.0, "y": -0.0, "z": 0.1}, '{"x":1,"y":0,"z":0.1}'),
        ({"é": "ü"}, '{"é":"ü"}'),
        ((1, 2), "[1,2]"),
    ],
)
def test_canonical_json(obj: Any, expected: str) -> None:
    assert canonical_json(obj) == expected


@pytest.mark.parametrize(
    "obj", [{"a": {1, 2}}, {1: "a"}, {"a": float("nan")}, {"a": float("inf")}, {"a": object()}]
)
def test_canonical_json_rejects_non_json(obj: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        canonical_json(obj)


def test_sha256_hex() -> None:
    assert sha256_hex({"a": 1}) == "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
    assert sha256_hex({"a": 1}) == sha256_hex({"a": 1.0})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://user:pass@host", "postgresql://user:***@host"),
        ("postgresql+psycopg://u:p%40ss@db.example:5432/hl?sslmode=require",
         "postgresql+psycopg://u:***@db.example:5432/hl?sslmode=require"),
        ("postgresql://u:p@ss:w0rd@host/db", "postgresql://u:***@host/db"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("postgresql://host/db?password=pw&app=x", "postgresql://host/db?password=***&app=x"),
        ("https://api.hyperliquid.xyz/info", "https://api.hyperliquid.xyz/info"),
        ("data/hlcore.db", "data/hlcore.db"),
    ],
)  # fmt: skip
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
