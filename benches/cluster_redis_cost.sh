#!/usr/bin/env bash
# Issue 12's "Redis CPU per published message independent of the number of subscribers",
# counted in instructions (this VM has no hardware counters, and Redis's CPU time is
# disturbed by the nodes sharing its core): redis-server runs under callgrind while 2 nodes
# (--reuse-port) fan 100 msgs/s for DUR seconds out to SUBS WebSocket subscribers; the
# instructions Redis executed are divided by the messages published. Run for several SUBS.
#   benches/cluster_redis_cost.sh            # SUBS="1000 10000" DUR=10
set -euo pipefail
cd "$(dirname "$0")/.."
SUBS=${SUBS:-1000 10000}
DUR=${DUR:-10}
BIN=${PUSHWIRE_BIN:-target/release/pushwire}
LG=${LG:-../shared/bench/loadgen/target/release/loadgen}
PORT=9125
RPORT=9126
OUT=$(mktemp -d)
for subs in $SUBS; do
  taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$OUT/redis.$subs" redis-server --port $RPORT --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
  rpid=$!
  for _ in $(seq 200); do redis-cli -p $RPORT ping >/dev/null 2>&1 && break; sleep 0.1; done
  pids=()
  for n in 0 1; do
    taskset -c 0 "$BIN" --listen 127.0.0.1:$PORT --stats-interval 0 --max-connections 30000 --reuse-port --redis redis://127.0.0.1:$RPORT --node-id "n$n" 2>/dev/null &
    pids+=($!)
  done
  for _ in $(seq 100); do curl -fs http://127.0.0.1:$PORT/healthz >/dev/null && break; sleep 0.1; done
  line=$(taskset -c 1 "$LG" ws-fanout --sub-url ws://127.0.0.1:$PORT/channels/bench --pub http://127.0.0.1:$PORT/channels/bench \
    --subs "$subs" --rate 100 --duration "$DUR" --size 64 --settle-ms 1500 2>/dev/null | tail -n 1)
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  redis-cli -p $RPORT shutdown nosave >/dev/null 2>&1 || true
  wait $rpid 2>/dev/null || true
  ir=$(sed -n 's/^summary: //p' "$OUT/redis.$subs" | awk '{print $1}')
  python3 - "$subs" "$ir" "$line" <<'PY'
import json, sys
subs, ir, line = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
pub = line.get("published", 0)
print(f"{int(subs):>6} subscribers: {pub} published, {line.get('lost')} lost, Redis {ir:,} instructions in all = {ir / max(pub, 1):,.0f} per publish "
      "(startup and idle included)")
PY
done
