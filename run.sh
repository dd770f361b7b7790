#!/usr/bin/env bash
# Install Quarry into .venv (once) and serve FILE, or the bundled demo file, on :8080.
set -euo pipefail
# Installed from the repository, run from the caller's folder: a relative FILE is found
# there, and the data folder (./quarry-data) is made there, as `quarry serve` would.
HERE=$PWD
cd "$(dirname "$0")"
REPO=$PWD
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import quarry" 2>/dev/null; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e .
fi
cd "$HERE"
if [ $# -ge 1 ]; then
  exec "$REPO/.venv/bin/quarry" serve "$@"
else
  exec "$REPO/.venv/bin/quarry" serve --demo
fi
