#!/usr/bin/env bash
# Install Quarry with its test extras into .venv (once), then lint, type-check and test.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.quarry-test-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test,ray]"
  touch "$stamp"
fi
.venv/bin/ruff check src tests bench
.venv/bin/mypy
.venv/bin/pytest "$@"
