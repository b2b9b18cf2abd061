#!/usr/bin/env bash
# Set up a venv (if missing) and run the main job on the embedded defaults: validate the default
# policy and settings, then replay every runbook drill offline (SQLite, recorded cassettes,
# scripted clock). No network, no keys. Exit 1 if a drill fails, 2 if a drill file is bad.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
.venv/bin/hlcore validate
.venv/bin/hlcore drill "$@"
