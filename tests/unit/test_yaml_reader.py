"""The one bounded YAML reader: every hostile or broken input is a located BadInput (exit 2),
never a traceback, a hang or a memory blow-up (issue 13)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hlcore.errors import BadInput
from hlcore.yamlsource import MAX_BYTES, load_yaml, parse_yaml
from hlcore_cli import app

runner = CliRunner()

BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))

BAD = [
    pytest.param("<<: 5\n", r"f\.yaml:1: `<<` merges a mapping", id="merge-scalar"),
    pytest.param("? [a]\n: 1\n", r"f\.yaml:1: a key must be a plain scalar", id="list-key"),
    pytest.param("x: 1\n? {a: 1}\n: 2\n", r"f\.yaml:2: a key must be a plain scalar", id="map-key"),
    pytest.param("a: !!int abc\n", r"f\.yaml:1: a: cannot read int value 'abc'", id="bad-int"),
    pytest.param("a: !!float x\n", r"f\.yaml:1: a: cannot read float value", id="bad-float"),
    pytest.param("a: !!binary '%%%'\n", r"tag !!binary is not allowed", id="binary"),
    pytest.param("a: !!timestamp 2024-13-45\n", r"tag !!timestamp is not allowed", id="timestamp"),
    pytest.param("b: 1\na: 2024-01-02\n", r"f\.yaml:2: a: tag !!timestamp .*quote a date", id="implicit-date"),
    pytest.param("a: !!python/object:os.system ls\n", r"tag !!python/object:os.system is not allowed", id="python"),
    pytest.param("a: !local x\n", r"tag !local is not allowed", id="local-tag"),
    pytest.param("a: .nan\n", r"a: non-finite number '.nan'", id="nan"),
    pytest.param("a: -.inf\n", r"a: non-finite number '-.inf'", id="inf"),
    pytest.param("a: 1.0e+999\n", r"non-finite number", id="overflow-float"),
    pytest.param("a: " + "[" * 300 + "\n", r"brackets nested deeper than 256", id="flow-depth"),
    pytest.param("a: " + "[" * 200_000 + "\n", r"brackets nested deeper than 256", id="flow-depth-huge"),
    pytest.param("a:\n" + "".join("  " * i + "-\n" for i in range(1, 120)), r"nested deeper than 64", id="depth"),
    pytest.param("a: &x [*x]\n", r"f\.yaml:1: ", id="recursive-alias"),
    pytest.param("a: *nope\n", r"f\.yaml:1: YAML syntax error: found undefined alias", id="undefined-alias"),
    pytest.param(BILLION_LAUGHS, r"aliases expand to more than 10000 nodes", id="billion-laughs"),
    pytest.param("a: 1\na: 2\n", r"f\.yaml:2: a: duplicate key 'a'", id="duplicate-key"),
    pytest.param("a: \x00\n", r"f\.yaml:1: YAML error: unacceptable character", id="control-char"),
    pytest.param("a: 1\n---\nb: 2\n", r"f\.yaml:\d+: YAML syntax error", id="two-documents"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_hostile_text_is_one_located_error(text: str, expected: str) -> None:
    with pytest.raises(BadInput) as info:
        parse_yaml(text, "f.yaml")
    assert len(info.value.problems) == 1
    assert re.search(expected, str(info.value)), str(info.value)


def test_plain_yaml_still_reads_with_anchors_and_merges() -> None:
    src = parse_yaml("base: &b {x: 1, y: 2}\nuse: {<<: *b, y: 3}\non: no\n", "f.yaml")
    assert src.data == {"base": {"x": 1, "y": 2}, "use": {"x": 1, "y": 3}, "on": "no"}
    assert src.line(("use", "y")) == 2


def test_keys_are_names_so_they_never_mix_types() -> None:
    """`1:` beside `true:` used to collide (1 == True) and `1:` beside `a:` broke sorting."""
    assert parse_yaml("1: a\ntrue: b\n~: c\nx: d\n", "f.yaml").data == {"1": "a", "true": "b", "~": "c", "x": "d"}
    with pytest.raises(BadInput, match=r"f\.yaml:2: 1: duplicate key '1'"):
        parse_yaml("1: a\n'1': b\n", "f.yaml")


def test_mixed_key_types_in_settings_are_one_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("ingest:\n  1: 2\n  null: 3\n", encoding="utf-8")
    result = runner.invoke(app, ["validate", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert "settings.yaml:2: ingest.1: unknown key" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_files_that_are_not_regular_files_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    for path, expected in [(Path("/dev/zero"), "not a regular file"), (tmp_path, "not a regular file"),
                           (fifo, "not a regular file"), (tmp_path / "missing.yaml", "no such file")]:
        with pytest.raises(BadInput, match=expected):
            load_yaml(path)


def test_non_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(BadInput, match=r"latin\.yaml:2: not UTF-8 text \(byte 0xe9\)"):
        load_yaml(path)


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * (MAX_BYTES + 1))
    with pytest.raises(BadInput, match="larger than"):
        load_yaml(path)


def test_validate_billion_laughs_config_exits_2_fast(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS, encoding="utf-8")
    result = runner.invoke(app, ["validate", "--config", str(path)])  # timed in benchmarks/input_bounds.py
    assert result.exit_code == 2, result.output
    assert "aliases expand to more than" in result.output
    assert "Traceback" not in result.output


def test_line_100_error_prints_digits_not_an_emoji(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("\n" * 99 + "safety: {warn_threshold: abc}\n", encoding="utf-8")
    result = runner.invoke(app, ["validate", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert "settings.yaml:100:" in result.output
    assert "\N{HUNDRED POINTS SYMBOL}" not in result.output


def test_overlong_fixtures_path_is_a_clean_error() -> None:
    result = runner.invoke(app, ["drill", "--fixtures", "x" * 5000])
    assert result.exit_code == 2, result.output
    assert "file name too long" in result.output
    assert "Traceback" not in result.output
