"""`hlcore hash`, `graph`, `init`: stable hashes, generated diagrams, an operator's own copy."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from hlcore.yamlsource import load_yaml
from hlcore_cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def copy_policy(tmp_path: Path) -> Path:
    for sub in ("machines", "rules"):
        shutil.copytree(ROOT / sub, tmp_path / sub)
    return tmp_path


def hashes(policy: Path, config: Path | None = None) -> dict[str, str]:
    args = ["hash", "--policy", str(policy)] + (["--config", str(config)] if config else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return dict(line.split("=", 1) for line in result.output.split())


def reversed_keys(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: reversed_keys(node[k]) for k in reversed(list(node))}
    if isinstance(node, list):
        return [reversed_keys(x) for x in node]
    return node


def test_hash_is_stable_across_runs() -> None:
    assert hashes(ROOT) == hashes(ROOT)


def test_reordering_keys_and_reindenting_does_not_change_hashes(tmp_path: Path) -> None:
    policy = copy_policy(tmp_path)
    before = hashes(policy)
    for path in sorted((policy / "machines").glob("*.yaml")) + sorted((policy / "rules").glob("*.yaml")):
        data = load_yaml(path).data
        path.write_text(yaml.safe_dump(reversed_keys(data), sort_keys=False, indent=4, width=200),
                        encoding="utf-8")
    after = hashes(policy)
    assert after == before


def test_changing_one_threshold_in_rules_changes_the_hash(tmp_path: Path) -> None:
    policy = copy_policy(tmp_path)
    before = hashes(policy)
    path = policy / "rules" / "playbook.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count("when: {fact: dispersion, gte: 60}") == 1
    path.write_text(text.replace("when: {fact: dispersion, gte: 60}", "when: {fact: dispersion, gte: 65}"),
                    encoding="utf-8")
    after = hashes(policy)
    assert after["policy_hash"] != before["policy_hash"]
    assert after["config_hash"] != before["config_hash"]


def test_changing_a_setting_changes_only_the_config_hash(tmp_path: Path) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text("monitor:\n  health:\n    stale_age_sec: 900\n", encoding="utf-8")
    before, after = hashes(ROOT), hashes(ROOT, config)
    assert after["policy_hash"] == before["policy_hash"]
    assert after["config_hash"] != before["config_hash"]


def test_secrets_in_the_environment_never_reach_the_config_hash(monkeypatch: Any) -> None:
    before = hashes(ROOT)
    monkeypatch.setenv("BINANCE_API_KEY", "k" * 64)
    monkeypatch.setenv("BINANCE_API_SECRET", "s" * 64)
    assert hashes(ROOT) == before


def test_graph_safety_mermaid_shows_the_three_modes_and_transitions() -> None:
    result = runner.invoke(app, ["graph", "safety", "--format", "mermaid"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("stateDiagram-v2")
    for mode in ("ARMED_LIVE", "ARMED_SAFE", "HALT"):
        assert f"state {mode}" in out
    assert "[*] --> ARMED_SAFE" in out
    assert "HALT --> ARMED_SAFE: recovered [halt_recovery_allowed] / HALT_RECOVERY_AUTO" in out
    assert "HALT --> ARMED_SAFE: unhalted / MANUAL_UNHALT (operator)" in out
    assert "ARMED_SAFE --> ARMED_LIVE: promoted / MANUAL_PROMOTE (operator)" in out


def test_graph_dot_and_errors() -> None:
    result = runner.invoke(app, ["graph", "health", "--format", "dot"])
    assert result.exit_code == 0
    assert result.output.startswith('digraph "health" {')
    assert '"STALE" -> "HEALTHY" [label="released / OK"];' in result.output
    bad = runner.invoke(app, ["graph", "nope"])
    assert bad.exit_code == 2
    assert "unknown machine 'nope' (known: alert_delivery," in bad.output
    fmt = runner.invoke(app, ["graph", "safety", "--format", "png"])
    assert fmt.exit_code == 2
    assert "--format: expected one of mermaid, dot, got 'png'" in fmt.output


def test_init_copies_a_valid_policy_and_refuses_to_overwrite(tmp_path: Path, monkeypatch: Any) -> None:
    target = tmp_path / "ops-repo"
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 0, result.output
    assert (target / "machines" / "safety.yaml").is_file()
    assert (target / "rules" / "facts.yaml").is_file()
    assert (target / "config" / "settings.yaml").is_file()
    assert not (target / "config" / "schema.yaml").exists()
    drills = sorted(d.name for d in (ROOT / "fixtures").iterdir() if (d / "drill.yaml").is_file())
    assert sorted(d.name for d in (target / "fixtures").iterdir() if (d / "drill.yaml").is_file()) == drills
    assert list((target / "fixtures" / "gap_exceeded" / "cassettes").glob("*.yaml"))  # the drills' cassettes too
    monkeypatch.chdir(target)  # ./machines, ./rules and ./config are picked up by default
    validated = runner.invoke(app, ["validate"])
    assert validated.exit_code == 0, validated.output
    assert re.search(r"policy=.*ops-repo", validated.output)
    again = runner.invoke(app, ["init", str(target)])
    assert again.exit_code == 1
    assert "refusing to overwrite" in again.output


def test_bad_config_is_exit_2_with_location(tmp_path: Path) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text("safety:\n  warn_threshold: 0.02\n", encoding="utf-8")
    result = runner.invoke(app, ["validate", "--config", str(config)])
    assert result.exit_code == 2
    assert re.search(r"settings\.yaml:2: safety\.warn_threshold: must be less than safety\.critical_threshold",
                     result.output), result.output
    assert "Traceback" not in result.output
