#!/usr/bin/env bash
# Installs what the browser tests need: Debian's chromium (no browser download) and
# playwright-core (tests/e2e/package-lock.json). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y -qq chromium >/dev/null 2>&1 || { $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium >/dev/null; }
fi
command -v node >/dev/null || { echo "setup-e2e: node is needed (Debian: apt-get install nodejs npm)" >&2; exit 1; }
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
