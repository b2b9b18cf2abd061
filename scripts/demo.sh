#!/usr/bin/env bash
# Set up a venv (if missing) and run the main job on the embedded defaults: validate the default
# policy and settings, print the hashes and the safety machine. No network, no keys.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
.venv/bin/hlcore validate
.venv/bin/hlcore hash
.venv/bin/hlcore graph safety --format mermaid
