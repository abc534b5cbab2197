#!/usr/bin/env bash
# Install Debian's chromium for the tear-sheet rendering test (tests/test_allocation_tearsheet.py),
# which opens the generated HTML in a real headless browser and checks the plots were drawn.
# Idempotent: does nothing when `chromium` is already on PATH. Needs root (apt-get).
# Usage: scripts/install_chromium.sh
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  echo "chromium already installed: $(chromium --version 2>/dev/null || command -v chromium)"
  exit 0
fi

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
echo "installed $(chromium --version)"
