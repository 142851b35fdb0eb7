#!/usr/bin/env bash
# Leak check under real load. One pushwire process serves ROUNDS rounds of the shared kit's
# load generator: WebSocket and SSE fan-out to 1,000 subscribers each, WebSocket echo with 16
# in flight, 5,000 idle WebSocket and 5,000 idle SSE connections, and a burst of bad requests
# and protocol errors. After each round, once every client is gone, it prints the server's
# RSS, its connection count and its channel count.
#
# Why RSS after a round, not during: the first round sets the allocator's high-water mark;
# memory a round frees is reused by the next. A leak shows as RSS that keeps climbing round
# after round. Exits 1 when the last round ends more than 10 % (and 1 MiB) above the first,
# or when connections are still open after a round.
#
# usage: benches/soak.sh [ROUNDS] (default 5; about 40 s per round), from the project root.
set -u -o pipefail
ROUNDS=${1:-5}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive integer" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
KIT=${KIT:-$HERE/../../shared/bench}
LOADGEN=$KIT/loadgen/target/release/loadgen
BIN=${PUSHWIRE_BIN:-./target/release/pushwire}
PORT=${PORT:-9120}
HOST=127.0.0.1:$PORT
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release first" >&2; exit 2; }
[ -x "$LOADGEN" ] || (cd "$KIT/loadgen" && cargo build --release) || exit 2

LOG=$(mktemp)
# Short history so the round's channel is forgotten between rounds: what is left is leaks.
taskset -c 0 "$BIN" --listen "$HOST" --history-ttl 2 >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -f "$LOG"' EXIT
for _ in $(seq 50); do curl -fsS "http://$HOST/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$PID/status"; }
lg() { timeout 120 taskset -c 1 "$LOADGEN" "$@" --server-pid "$PID" >/dev/null 2>>"$LOG.lg" || echo "loadgen $1 failed (see $LOG.lg)" >&2; }

# Bad input of every kind, on fresh connections: each gets its error and is closed.
bad_requests() {
  python3 - "$PORT" <<'PY'
import socket, sys
port = int(sys.argv[1])
bad = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",                                          # no Host
    b"POST /channels/x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST /channels/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /channels/bad%20name HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    # a valid upgrade followed by an unmasked frame (close 1002)
    b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n\x81\x02hi",
    # invalid UTF-8 in a text frame (close 1007)
    b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n\x81\x82\x00\x00\x00\x00\xc3\x28",
    # /ws control socket with bad JSON, then gone without a close frame
    b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n\x81\x85\x00\x00\x00\x00{nope",
    b"GET /channels/soak HTTP/1.1\r\nHost: t\r\nLast-Event-ID: nope\r\n\r\n",
]
for _ in range(50):
    for raw in bad:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(raw)
        try:
            s.recv(65536)
        except OSError:
            pass
        s.close()
PY
}

# Waits (at most 20 s) until the server holds no client connection, then prints its stats.
settle() {
  local stats=""
  for _ in $(seq 200); do
    stats=$(curl -fsS "http://$HOST/stats" 2>/dev/null) || stats=""
    # The /stats request itself is the one open connection.
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d["connections"]["total"] <= 1 and d["channels"] == 0 else 1)' "$stats" 2>/dev/null && break
    sleep 0.1
  done
  echo "$stats"
}

first=0 last=0 bad=0
printf '%-6s %10s %12s %9s\n' round "RSS KiB" connections channels
for r in $(seq 1 "$ROUNDS"); do
  lg ws-fanout --sub-url "ws://$HOST/channels/soak" --pub "http://$HOST/channels/soak" --subs 1000 --rate max --duration 5 --size 64
  lg sse-fanout --sub-url "http://$HOST/channels/soak" --pub-url "http://$HOST/channels/soak" --subs 1000 --rate max --duration 5 --size 64
  lg ws-echo --url "ws://$HOST/echo" --conns 100 --inflight 16 --size 32 --duration 5
  lg idle --url "ws://$HOST/echo" --conns 5000 --hold 2
  lg idle --url "http://$HOST/channels/soak" --conns 5000 --hold 2
  bad_requests
  sleep 2.5  # history TTL: the channel empties and is forgotten at the next sweep
  stats=$(settle)
  rss=$(rss_kib)
  read -r conns chans < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["connections"]["total"] - 1, d["channels"])' "$stats" 2>/dev/null || echo "? ?")
  printf '%-6s %10s %12s %9s\n' "$r" "$rss" "$conns" "$chans"
  [ "$conns" = 0 ] || bad=1
  [ "$r" -eq 1 ] && first=$rss
  last=$rss
done
kill -0 "$PID" 2>/dev/null || { echo "FAIL: the server died"; exit 1; }
growth=$((last - first))
echo "RSS after round 1: $first KiB; after round $ROUNDS: $last KiB (growth $growth KiB)"
if [ "$bad" -ne 0 ]; then echo "FAIL: connections left open after a round"; exit 1; fi
if [ "$growth" -gt 1024 ] && [ $((growth * 10)) -gt "$first" ]; then echo "FAIL: RSS keeps growing"; exit 1; fi
echo "ok: no growth beyond the first round's high-water mark"
