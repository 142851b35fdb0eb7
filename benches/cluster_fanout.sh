#!/usr/bin/env bash
# Issue 12's benchmark: WebSocket fan-out to SUBS subscribers spread over 2 pushwire nodes
# joined by Redis (both listening on one port with --reuse-port: the kernel spreads the
# subscribers), against the same load on 1 node without Redis, in one sitting. On 2 cores
# the figure to compare is cost, not throughput: CPU seconds per delivery of the pushwire
# processes (both nodes summed) and of redis-server, read from /proc/PID/stat around each
# loadgen run. Servers on CPU 0, loadgen on CPU 1 (as the kit's bench.sh does).
#
#   benches/cluster_fanout.sh            # REPS=3 DUR=10 SUBS=10000 RATES="max 100"
#   NODE_CPUS="0 1" benches/cluster_fanout.sh   # the second node on the loadgen's CPU
#   LG_EXTRA="--window 256" ...                 # more messages in flight at --rate max
# Prints one line per run and the medians. Needs the kit's loadgen (../shared/bench) and
# redis-server; only ever talks to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
DUR=${DUR:-10}
SUBS=${SUBS:-10000}
RATES=${RATES:-max 100}
BIN=${PUSHWIRE_BIN:-target/release/pushwire}
LG=${LG:-../shared/bench/loadgen/target/release/loadgen}
PORT=9120
RPORT=9121
OUT=${OUT:-target/cluster_fanout.jsonl}
[ -x "$BIN" ] || cargo build --release
[ -x "$LG" ] || (cd ../shared/bench/loadgen && cargo build --release --target-dir target)
: > "$OUT"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

ticks() { # utime + stime of a pid, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}

wait_http() {
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$1/healthz" >/dev/null && return 0; sleep 0.1; done
  echo "node on $1 did not come up" >&2; return 1
}

run_setup() { # LABEL NODES(1|2)
  local label=$1 nodes=$2
  pids=()
  local redis_pid=""
  local args=(--listen "127.0.0.1:$PORT" --stats-interval 0 --max-connections 30000)
  if [ "$nodes" = 2 ]; then
    taskset -c 0 redis-server --port $RPORT --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
    redis_pid=$!; pids+=("$redis_pid")
    sleep 0.3
    local cpus=(${NODE_CPUS:-0 0})
    for n in 0 1; do
      taskset -c "${cpus[$n]}" "$BIN" "${args[@]}" --reuse-port --redis "redis://127.0.0.1:$RPORT" --node-id "node$n" 2>/dev/null &
      pids+=("$!")
    done
  else
    taskset -c 0 "$BIN" "${args[@]}" 2>/dev/null &
    pids+=("$!")
  fi
  wait_http $PORT
  sleep 0.5
  local servers=("${pids[@]}")
  [ -n "$redis_pid" ] && servers=("${pids[@]:1}")
  for rate in $RATES; do
    for rep in $(seq "$REPS"); do
      local before=() r0=0
      for p in "${servers[@]}"; do before+=("$(ticks "$p")"); done
      [ -n "$redis_pid" ] && r0=$(ticks "$redis_pid") && redis-cli -p $RPORT config resetstat >/dev/null
      line=$(taskset -c 1 "$LG" ws-fanout --sub-url "ws://127.0.0.1:$PORT/channels/bench" --pub "http://127.0.0.1:$PORT/channels/bench" \
        --subs "$SUBS" --rate "$rate" --duration "$DUR" --size 64 --settle-ms 1500 ${LG_EXTRA:-} --server-pid "${servers[0]}" 2>/dev/null | tail -n 1)
      local cpu=0 i=0
      for p in "${servers[@]}"; do cpu=$((cpu + $(ticks "$p") - before[i])); i=$((i + 1)); done
      local rcpu=0
      local evalus=0
      if [ -n "$redis_pid" ]; then
        rcpu=$(( $(ticks "$redis_pid") - r0 ))
        # Redis's own count of the publish script's time per call: exact, unlike CPU ticks.
        evalus=$(redis-cli -p $RPORT info commandstats | tr -d '\r' | sed -n 's/^cmdstat_evalsha:.*usec_per_call=\([0-9.]*\).*/\1/p')
      fi
      python3 - "$label" "$rate" "$rep" "$cpu" "$rcpu" "$(getconf CLK_TCK)" "$line" "${evalus:-0}" >> "$OUT" <<'EOF'
import json, sys
label, rate, rep, cpu, rcpu, hz, line, evalus = sys.argv[1:]
r = json.loads(line)
hz = float(hz)
# CPU over the whole loadgen run (connect, settle, window, drain): divided by every
# delivery the subscribers received, and Redis's by every message published.
received, published = r.get("received", 0), r.get("published", 0)
out = {"label": label, "rate": rate, "rep": int(rep), "deliveries_per_s": r.get("deliveries_per_s"),
       "received": received, "lost": r.get("lost"), "out_of_order": r.get("out_of_order"),
       "p99_ms": r.get("lat_p99_us", 0) / 1000, "publish_per_s": r.get("publish_per_s"),
       "pushwire_cpu_s": int(cpu) / hz, "redis_cpu_s": int(rcpu) / hz,
       "pushwire_ns_per_delivery": int(cpu) / hz * 1e9 / max(received, 1),
       "redis_us_per_publish": int(rcpu) / hz * 1e6 / max(published, 1), "redis_eval_us_per_call": float(evalus),
       "loadgen_cpu_pct": r.get("loadgen_cpu_pct"), "disconnected": r.get("subs_disconnected", r.get("disconnected"))}
print(json.dumps(out))
print(f"{label:8} rate={rate:4} rep={rep}: {out['deliveries_per_s']:>12,.0f} deliveries/s  p99 {out['p99_ms']:7.1f} ms  "
      f"lost {out['lost']}  pushwire {out['pushwire_ns_per_delivery']:6.1f} ns/delivery  redis {out['redis_us_per_publish']:6.1f} us/publish (script {out['redis_eval_us_per_call']:.1f} us)  "
      f"loadgen {out['loadgen_cpu_pct']}%", file=sys.stderr)
EOF
    done
  done
  cleanup
  pids=()
  sleep 1
}

run_setup "1-node" 1
run_setup "2-nodes" 2
python3 - "$OUT" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(label, rate, k):
    v = [r[k] for r in rows if r["label"] == label and r["rate"] == rate]
    return statistics.median(v) if v else float("nan")
print(f"{'rate':>5} {'setup':8} {'deliveries/s':>14} {'p99 ms':>8} {'pushwire ns/delivery':>21} {'redis us/publish':>17} {'script us':>10} {'lost':>6}")
for rate in sorted({r["rate"] for r in rows}):
    for label in ["1-node", "2-nodes"]:
        print(f"{rate:>5} {label:8} {med(label, rate, 'deliveries_per_s'):>14,.0f} {med(label, rate, 'p99_ms'):>8.1f} "
              f"{med(label, rate, 'pushwire_ns_per_delivery'):>21.1f} {med(label, rate, 'redis_us_per_publish'):>17.2f} {med(label, rate, 'redis_eval_us_per_call'):>10.2f} "
              f"{max(r['lost'] for r in rows if r['label'] == label and r['rate'] == rate):>6}")
    a, b = med("1-node", rate, "pushwire_ns_per_delivery"), med("2-nodes", rate, "pushwire_ns_per_delivery")
    print(f"{rate:>5} cluster/single pushwire CPU per delivery: {b / a:.2f}x")
EOF
