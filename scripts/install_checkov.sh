#!/usr/bin/env bash
# Create .venv-checkov with checkov pinned, apart from the project venv: checkov downgrades
# packaging, networkx and cachetools, which would break `pip check` in .venv (STACK-NOTES.md).
# Idempotent: does nothing when .venv-checkov already runs the pinned version.
# Usage: scripts/install_checkov.sh [VENV_DIR]   (default .venv-checkov, relative to the repo root)
set -euo pipefail
cd "$(dirname "$0")/.."

CHECKOV_VERSION="3.3.30"
VENV_DIR="${1:-.venv-checkov}"
PYTHON_SYS="${PYTHON_SYS:-$(command -v python3.11 || command -v python3)}"

if [[ -x "$VENV_DIR/bin/checkov" ]] && [[ "$("$VENV_DIR/bin/checkov" --version 2>/dev/null)" == "$CHECKOV_VERSION" ]]; then
  echo "checkov $CHECKOV_VERSION already in $VENV_DIR"
  exit 0
fi

test -x "$VENV_DIR/bin/python" || "$PYTHON_SYS" -m venv "$VENV_DIR"
"$VENV_DIR/bin/python" -m pip install --quiet --upgrade pip
"$VENV_DIR/bin/python" -m pip install --quiet "checkov==$CHECKOV_VERSION"
installed="$("$VENV_DIR/bin/checkov" --version)"
if [[ "$installed" != "$CHECKOV_VERSION" ]]; then
  echo "installed checkov reports $installed, expected $CHECKOV_VERSION" >&2
  exit 1
fi
echo "installed checkov $installed in $VENV_DIR"
