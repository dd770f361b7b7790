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
# The console's browser test drives Debian's Chromium; install it when missing.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium for the console's browser test..."
  (apt-get install -y -qq chromium >/dev/null 2>&1 ||
   (apt-get update -qq && apt-get install -y -qq chromium >/dev/null 2>&1)) ||
   echo "warning: could not install chromium; the browser test will fail" >&2
fi
.venv/bin/ruff check src tests bench
.venv/bin/mypy
.venv/bin/pytest "$@"
