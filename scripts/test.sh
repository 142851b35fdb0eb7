#!/usr/bin/env bash
# Every test: the Rust unit and integration tests (the real server on ephemeral ports, raw
# sockets), the fuzz seed corpus, then the demo pages in headless Chromium and the official
# socket.io-client against the server.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-e2e.sh
cargo test --locked
node tests/e2e/run.mjs target/debug/pushwire
node tests/e2e/sio.mjs target/debug/pushwire
node tests/e2e/deflate.mjs target/debug/pushwire
node tests/e2e/cluster.mjs target/debug/pushwire
