#!/usr/bin/env bash
# Installs what the tests need: Debian's chromium (no browser download) and playwright-core
# (tests/e2e/package-lock.json) for the browser tests, and iproute2's `ss` (the keep-alive and
# backlog test reads the server's sockets with it), redis-server (the Redis link's tests
# start their own on ephemeral ports), and socket.io-client (same lock file). Safe to run
# again.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v ss >/dev/null || need+=(iproute2)
command -v redis-server >/dev/null || need+=(redis-server)
command -v openssl >/dev/null || need+=(openssl)   # the HTTPS page test makes its certificate
if [ ${#need[@]} -gt 0 ]; then
  $sudo apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || { $sudo apt-get update -qq && $sudo apt-get install -y -qq "${need[@]}" >/dev/null; }
fi
command -v node >/dev/null || { echo "setup-e2e: node is needed (Debian: apt-get install nodejs npm)" >&2; exit 1; }
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
