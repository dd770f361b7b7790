#!/usr/bin/env bash
# Install Quarry into .venv (once) and serve FILE, or the bundled demo file, on :8080.
set -euo pipefail
# Run from the repository (its .venv, its ./quarry-data); a FILE named relative to the
# caller's folder is made absolute first, so `path/to/run.sh data.txt` works from anywhere.
args=()
for a in "$@"; do
  if [ -e "$a" ] && [ "${a#/}" = "$a" ]; then a="$PWD/$a"; fi
  args+=("$a")
done
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import quarry" 2>/dev/null; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e .
fi
if [ $# -ge 1 ]; then
  exec .venv/bin/quarry serve "${args[@]}"
else
  exec .venv/bin/quarry serve --demo
fi
