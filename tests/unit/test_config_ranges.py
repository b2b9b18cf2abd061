"""Settings with declared ranges (issue 13): every numeric setting has a type that is not a
boolean, a finite range, and `off:` where a value switches a check off (warned; --strict fails)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hlcore.config.ranges import numeric_rules
from hlcore.config.settings import load_settings
from hlcore.errors import BadInput
from hlcore.yamlsource import load_yaml
from hlcore_cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
SCHEMA = load_yaml(ROOT / "config" / "schema.yaml").data["schema"]
RULES = list(numeric_rules(SCHEMA))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def nested(dotted: str, value: str) -> str:
    parts = dotted.split(".")
    head = "".join(f"{'  ' * i}{p}:\n" for i, p in enumerate(parts[:-1]))
    return head + f"{'  ' * (len(parts) - 1)}{parts[-1]}: {value}\n"


def test_every_numeric_setting_declares_a_finite_range() -> None:
    assert len(RULES) > 80
    for r in RULES:
        assert isinstance(r.rule.get("min"), int | float) and isinstance(r.rule.get("max"), int | float), r.dotted
        assert r.rule["min"] <= r.rule["max"], r.dotted


SCALARS = [r for r in RULES if "[]" not in r.dotted and "*" not in r.dotted]


@pytest.mark.parametrize("rule", SCALARS, ids=[r.dotted for r in SCALARS])
def test_above_the_range_or_a_boolean_is_refused(tmp_path: Path, rule) -> None:
    above = rule.rule["max"] + 1
    for value, expected in [(str(above), rf"must be <= {rule.rule['max']}"), ("true", r"expected (integer|number)")]:
        path = write(tmp_path, nested(rule.dotted, value))
        with pytest.raises(BadInput) as info:
            load_settings(path)
        mine = [p for p in info.value.problems if p.path == rule.dotted]
        assert mine and re.search(expected, mine[0].message), (value, [str(p) for p in info.value.problems])
        assert mine[0].line is not None


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1.0e+999"])
def test_non_finite_values_are_refused_by_validate_and_hash(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"safety:\n  critical_threshold: {value}\n")
    for command in (["validate"], ["hash"]):
        result = runner.invoke(app, [*command, "--config", str(path)])
        assert result.exit_code == 2, (command, result.output)
        assert "non-finite number" in result.output
        assert "Traceback" not in result.output


def test_a_check_switched_off_is_a_warning_and_strict_fails(tmp_path: Path) -> None:
    path = write(tmp_path, "monitor:\n  alerts:\n    exit_cooldown_min: 0\n")
    loose = runner.invoke(app, ["validate", "--config", str(path)])
    assert loose.exit_code == 0, loose.output
    assert re.search(r"warning: .*settings\.yaml:3: monitor\.alerts\.exit_cooldown_min: 0 turns this check off "
                     r".*\[setting-off\]", loose.output), loose.output
    assert "warnings=1" in loose.output
    strict = runner.invoke(app, ["validate", "--config", str(path), "--strict"])
    assert strict.exit_code == 1, strict.output


def test_defaults_switch_nothing_off_beyond_the_spec(tmp_path: Path) -> None:
    """max_stale_ms: 0 and slippage_cap_pct: 0.0 ship off (copytrader §7): the reviewed baseline."""
    settings = load_settings(None)
    assert settings.checks_off == ()
    assert settings.get("decision.max_stale_ms") == 0


def test_schema_without_a_range_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "settings.yaml").write_text((ROOT / "config" / "settings.yaml").read_text(encoding="utf-8"))
    text = (ROOT / "config" / "schema.yaml").read_text(encoding="utf-8")
    old = "tif_seconds: {<<: *pos_int, max: 3600,"
    assert old in text
    (config / "schema.yaml").write_text(text.replace(old, "tif_seconds: {<<: *pos_int,"), encoding="utf-8")
    monkeypatch.setattr("hlcore.config.settings.default_dir", lambda name: config)
    with pytest.raises(BadInput, match=r"schema\.yaml:\d+: .*numeric setting 'execution\.tif_seconds' needs a "
                                       r"finite range"):
        load_settings(None)
