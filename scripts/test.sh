#!/usr/bin/env bash
# Set up a venv (if missing) and run lint + the whole test suite. Used by the README and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
.venv/bin/ruff check hlcore replay tests benchmarks
# pytest exits 5 when it collects nothing: that is a failure here, as any non-zero exit is.
.venv/bin/python -m pytest -o addopts= -q -p no:cacheprovider "$@"
