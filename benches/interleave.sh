#!/usr/bin/env bash
# Runs the shared kit's bench.sh in ROUNDS short rounds that alternate the server order, then
# prints medians and the median of *paired* ratios (each round's figures divided by the same
# round's baseline).
#
# Why: this machine's speed changes in phases (the same binary gives 570k or 215k echo msgs/s,
# with identical instruction counts; only IPC changes), and a phase lasts from seconds to
# minutes. bench.sh runs every repeat of one server before the next server starts, so a phase
# change between them skews the ratio either way. Interleaving puts both servers of a ratio in
# the same phase most of the time, and alternating the order cancels a drift within a round.
#
# usage: benches/interleave.sh ROUNDS SECTION SERVER... (run from the project root)
#   e.g. benches/interleave.sh 6 echo pushwire tt-echo
#        FANOUT_SUBS=1000 FANOUT_RATES=max benches/interleave.sh 6 fanout pushwire axum-bcast
# The baseline is the last server named. bench.sh's variables (DUR, ECHO_INFLIGHT, FANOUT_SUBS,
# ...) pass through; REPS is 1 per round. Every run is also in the kit's run/results.jsonl.
set -u -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
KIT=${KIT:-$HERE/../../shared/bench}
[ $# -ge 3 ] || { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
ROUNDS=$1 SECTION=$2
shift 2
SERVERS=("$@")
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive integer" >&2; exit 2; }
[ $((ROUNDS % 2)) -eq 0 ] || echo "note: an odd ROUNDS runs one server order once more than the other" >&2
case $SECTION in echo|fanout) ;; *) echo "SECTION must be echo or fanout (idle has no throughput to pair)" >&2; exit 2 ;; esac
export BENCH_RUN=${BENCH_RUN:-$KIT/run}
mkdir -p "$BENCH_RUN"
SESSIONS=()
for r in $(seq 1 "$ROUNDS"); do
  order=("${SERVERS[@]}")
  if [ $((r % 2)) -eq 0 ]; then  # reverse every other round
    order=()
    for ((i = ${#SERVERS[@]} - 1; i >= 0; i--)); do order+=("${SERVERS[i]}"); done
  fi
  echo "== round $r/$ROUNDS: ${order[*]}"
  # tee to a copy of stderr, not /dev/stderr: reopening that would truncate a log file.
  out=$(REPS=1 "$KIT/bench.sh" "$SECTION" "${order[@]}" 2>&1 | tee >(cat >&2)) ||
    echo "round $r: bench.sh failed; its runs (if any) still count" >&2
  s=$(sed -n 's/^session \([^ ]*\).*/\1/p' <<< "$out" | head -n 1)
  [ -n "$s" ] && SESSIONS+=("$s")
done
BASE=${SERVERS[${#SERVERS[@]}-1]}
# bench.sh records tt-echo with a non-default read buffer under another name.
[ "$BASE" = tt-echo ] && [ -n "${TT_READ_BUF:-}" ] && BASE=tt-echo-rb$TT_READ_BUF
python3 - "$BENCH_RUN/results.jsonl" "$BASE" "${SESSIONS[@]}" <<'EOF'
import json, statistics, sys
path, base, sessions = sys.argv[1], sys.argv[2], sys.argv[3:]
rank = {s: i for i, s in enumerate(sessions)}
runs = {}  # (label, peer) -> {round: metric}
for line in open(path):
    if not line.strip():
        continue
    r = json.loads(line)
    if r["session"] not in rank or not r.get("result"):
        continue
    res = r["result"]
    m = res.get("msgs_per_s", res.get("deliveries_per_s"))
    if m is None:
        continue
    runs.setdefault((r["label"], r["peer"]), {})[rank[r["session"]]] = (m, res.get("loadgen_cpu_pct") or float("nan"), res.get("server_cpu_pct") or float("nan"))

def med(xs):
    return statistics.median(xs) if xs else float("nan")

def paired(a, b):
    common = sorted(set(a) & set(b))
    return [a[k][0] / b[k][0] for k in common if b[k][0]]

print(f"\n{len(sessions)} rounds; medians; 'paired' = median over rounds of the same round's ratio")
print(f"| test | server | n | median | min | max | loadgen CPU% | server CPU% | paired x {base} |")
print("|---|---|---|---|---|---|---|---|---|")
for (label, peer), by in sorted(runs.items()):
    ms = [v[0] for v in by.values()]
    b = runs.get((label, base))
    ratio = "-"
    if b is not None and peer != base:
        p = paired(by, b)
        ratio = f"{med(p):.2f} (rounds: {', '.join(f'{x:.2f}' for x in p)})"
    print(f"| {label} | {peer} | {len(ms)} | {med(ms):,.0f} | {min(ms):,.0f} | {max(ms):,.0f} | "
          f"{med([v[1] for v in by.values()]):.0f} | {med([v[2] for v in by.values()]):.0f} | {ratio} |")
# pushwire's SSE against its own WebSocket fan-out, same round
for (label, peer), by in sorted(runs.items()):
    if label.startswith("sse-fanout") and ("ws" + label[3:], peer) in runs:
        p = paired(by, runs[("ws" + label[3:], peer)])
        print(f"{peer} {label} / ws{label[3:]}: paired median {med(p):.2f} "
              f"(rounds: {', '.join(f'{x:.2f}' for x in p)})")
EOF
