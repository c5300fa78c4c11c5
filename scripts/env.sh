#!/usr/bin/env bash
# Create .venv and install nbsyn with its dependencies on first use (or when pyproject.toml changed).
# Sourced by run.sh and test.sh; afterwards $PY is the venv's python.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NBSYN_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
STAMP="$VENV/.nbsyn-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ ! -x "$PY" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "nbsyn: setting up $VENV (first run: a few minutes, torch is large) ..."
  start=$(date +%s)
  [ -x "$PY" ] || python3 -m venv "$VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  "$PY" -m pip install --quiet --disable-pip-version-check -e "$ROOT[dev]" 2>&1 | grep -v "^WARNING: Location" || true
  "$PY" -c "import nbsyn, torch, papermill, nbval" || { echo "nbsyn: installation failed" >&2; exit 1; }
  echo "$WANT" > "$STAMP"
  echo "nbsyn: environment ready in $(( $(date +%s) - start )) s"
fi
export PY
