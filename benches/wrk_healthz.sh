#!/usr/bin/env bash
# HTTP request rate of pushwire's GET /healthz beside nginx returning a small body, in one
# sitting: each server alone on CPU 0, wrk on CPU 1, runs alternating, medians printed.
#   benches/wrk_healthz.sh                      (from the project root)
# Environment: REPS=5 DUR=10 CONNS=100 PUSHWIRE_BIN=target/release/pushwire
# Needs: wrk and nginx (Debian: apt-get install -y wrk nginx-light); installs them if missing.
set -eu
REPS=${REPS:-5} DUR=${DUR:-10} CONNS=${CONNS:-100}
BIN=${PUSHWIRE_BIN:-target/release/pushwire}
PW_PORT=9120 NGX_PORT=9121
WORK=$(mktemp -d /tmp/pushwire-wrk.XXXXXX)
trap 'kill $PW_PID 2>/dev/null; [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null; sleep 0.3; rm -rf "$WORK"' EXIT

command -v wrk >/dev/null && command -v nginx >/dev/null || apt-get install -y wrk nginx-light >/dev/null
[ -x "$BIN" ] || cargo build --release

mkdir -p "$WORK/logs"
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$NGX_PORT;
    location / { return 200 "ok\n"; }
  }
}
CONF
taskset -c 0 nginx -p "$WORK" -c "$WORK/nginx.conf" & 
taskset -c 0 "$BIN" --listen 127.0.0.1:$PW_PORT --stats-interval 0 2>"$WORK/pushwire.log" & PW_PID=$!
for p in $PW_PORT $NGX_PORT; do
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done

run() {  # PORT -> "rps errors"
  local out
  out=$(taskset -c 1 timeout $((DUR + 20)) wrk -t1 -c"$CONNS" -d"${DUR}s" "http://127.0.0.1:$1/healthz")
  local rps errs
  rps=$(awk '/Requests\/sec/ {print int($2)}' <<<"$out")
  errs=$(awk '/Socket errors|Non-2xx/ {gsub(/[^0-9 ]/," "); for(i=1;i<=NF;i++) s+=$i} END {print s+0}' <<<"$out")
  echo "$rps $errs"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }

: > "$WORK/pw" ; : > "$WORK/ngx"
for i in $(seq "$REPS"); do
  # Alternate which server goes first, so drift in the machine favours neither.
  if [ $((i % 2)) = 1 ]; then order="pw ngx"; else order="ngx pw"; fi
  for s in $order; do
    port=$PW_PORT; [ "$s" = ngx ] && port=$NGX_PORT
    read -r rps errs < <(run $port)
    echo "run $i $s: $rps req/s, $errs errors" >&2
    echo "$rps $errs" >> "$WORK/$s"
  done
done
pw=$(cut -d' ' -f1 "$WORK/pw" | median); ngx=$(cut -d' ' -f1 "$WORK/ngx" | median)
pwe=$(awk '{s+=$2} END {print s}' "$WORK/pw"); ngxe=$(awk '{s+=$2} END {print s}' "$WORK/ngx")
echo
echo "| server | median req/s ($REPS x ${DUR}s, wrk -t1 -c$CONNS) | errors | ratio |"
echo "| --- | --- | --- | --- |"
echo "| nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), 1 worker, return 200 | $ngx | $ngxe | 1.00 |"
echo "| pushwire $(git rev-parse --short HEAD 2>/dev/null) | $pw | $pwe | $(awk -v a="$pw" -v b="$ngx" 'BEGIN {printf "%.2f", a/b}') |"
