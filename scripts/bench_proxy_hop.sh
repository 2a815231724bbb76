#!/usr/bin/env bash
# What a forwarded RotateSecrets costs in rotator, against an nginx reverse-proxy hop on the same
# path (h2c in, HTTP/1.1 out), both in front of the same nginx upstream with fixed answers.
#
#   cargo build --release && scripts/bench_proxy_hop.sh [ROTATOR_BIN]
#
# Not part of the test suite. Loopback only; everything runs from a temp dir and is stopped by
# PID. h2load drives the proxy hop and rotator in alternating rounds at concurrency 1 and 64 and
# the script prints, per path and concurrency, the median over rounds of req/s, p50/p99 latency
# and CPU µs per call (utime+stime delta of the server's processes from /proc/<pid>/stat over
# the calls of the round), then the ratios against the proxy hop. Every rotator call must leave
# one `completed` event in its outbox (checked after the run), so the durable event is measured.
#
# Environment: ROUNDS (5), CALLS_1 (3000 calls per round at concurrency 1), CALLS_64 (20000),
# CONNS_64 (8: concurrency 64 is CONNS_64 connections × 64/CONNS_64 streams). The upstream's
# answers are scripts/bench_proxy_hop/*.json: a Universal Auth login and a 1.4 KB rotate-secrets
# answer in the shape of testkit's fake Infisical (`rotation.rs`, `to_json`).
# PROFILE=FILE adds a perf profile of rotator at concurrency 64 (see below).
set -euo pipefail

cd "$(dirname "$0")/.."
ROTATOR_BIN=${1:-${CARGO_TARGET_DIR:-target}/release/rotator}
ROUNDS=${ROUNDS:-5}
CALLS_1=${CALLS_1:-3000}
CALLS_64=${CALLS_64:-20000}
CONNS_64=${CONNS_64:-8}

# --- tools -----------------------------------------------------------------------------------
if ! command -v nginx >/dev/null && ! [ -x /usr/sbin/nginx ] || ! command -v h2load >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx nghttp2-client >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$ROTATOR_BIN" ] || { echo "no rotator binary at $ROTATOR_BIN (cargo build --release)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/bench-proxy-hop.XXXXXX)
chmod 755 "$WORK" # the nginx workers (user nobody) read the fixed answers
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; done
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on $1" >&2; return 1
}

# --- fixtures: fixed answers in the fake Infisical's shape, and the gRPC request body ---------
FIX=scripts/bench_proxy_hop
ROTATION_ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["secretRotation"]["id"])' "$FIX/rotate.json")
# A RotateSecretsRequest {type: POSTGRES_CREDENTIALS (1), rotation_id} in a gRPC frame (flag 0,
# big-endian length).
python3 - "$ROTATION_ID" "$WORK/body.bin" <<'PY'
import struct, sys
rid = sys.argv[1].encode()
msg = bytes([0x08, 1, 0x12, len(rid)]) + rid
open(sys.argv[2], "wb").write(b"\0" + struct.pack(">I", len(msg)) + msg)
PY

# --- nginx: the upstream with fixed answers, and the proxy hop ---------------------------------
UP_PORT=$(free_port); PROXY_PORT=$(free_port); GRPC_PORT=$(free_port)
mkdir -p "$WORK/up/static" "$WORK/proxy"
cp "$FIX/login.json" "$WORK/up/static/login.json"
cp "$FIX/rotate.json" "$WORK/up/static/rotate.json"
common="worker_processes 1; daemon off; master_process on; error_log stderr warn;"
cat >"$WORK/up/nginx.conf" <<EOF
$common pid $WORK/up/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off; keepalive_requests 1000000; client_body_temp_path $WORK/up/tmp;
  proxy_temp_path $WORK/up/tmp; fastcgi_temp_path $WORK/up/tmp; uwsgi_temp_path $WORK/up/tmp; scgi_temp_path $WORK/up/tmp;
  server {
    listen 127.0.0.1:$UP_PORT;
    default_type application/json;
    # nginx serves files to GET only: a POST's 405 becomes the file with status 200.
    location = /api/v1/auth/universal-auth/login { error_page 405 =200 /static/login.json; return 405; }
    location ~ /rotate-secrets\$ { error_page 405 =200 /static/rotate.json; return 405; }
    location /static/ { internal; root $WORK/up; }
  }
}
EOF
cat >"$WORK/proxy/nginx.conf" <<EOF
$common pid $WORK/proxy/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off; keepalive_requests 1000000; client_body_temp_path $WORK/proxy/tmp;
  proxy_temp_path $WORK/proxy/tmp; fastcgi_temp_path $WORK/proxy/tmp; uwsgi_temp_path $WORK/proxy/tmp; scgi_temp_path $WORK/proxy/tmp;
  upstream infisical { server 127.0.0.1:$UP_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$PROXY_PORT http2;
    location = /rotator.v1.SecretRotationService/RotateSecrets {
      proxy_pass http://infisical/api/v2/secret-rotations/postgres-credentials/$ROTATION_ID/rotate-secrets;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer fixed";
    }
  }
}
EOF
mkdir -p "$WORK/up/tmp" "$WORK/proxy/tmp"
"$NGINX" -p "$WORK/up" -c "$WORK/up/nginx.conf" 2>"$WORK/up/stderr" & PIDS+=($!)
"$NGINX" -p "$WORK/proxy" -c "$WORK/proxy/nginx.conf" 2>"$WORK/proxy/stderr" & PROXY_PID=$!; PIDS+=($PROXY_PID)
wait_port "$UP_PORT"; wait_port "$PROXY_PORT"

# --- rotator ---------------------------------------------------------------------------------
env -i PATH="$PATH" HOME="$WORK" RUST_LOG=info \
  ROTATOR_LISTEN="127.0.0.1:$GRPC_PORT" ROTATOR_ADMIN_LISTEN=off ROTATOR_DATA_DIR="$WORK/rotator-data" \
  ROTATOR_INFISICAL_URL="http://127.0.0.1:$UP_PORT" ROTATOR_INFISICAL_CLIENT_ID=bench \
  ROTATOR_INFISICAL_CLIENT_SECRET=bench-secret ROTATOR_EVENTS_UNPUBLISHED_CAP_WITHOUT_NATS=1000000000 \
  "$ROTATOR_BIN" serve >"$WORK/rotator.log" 2>&1 & ROTATOR_PID=$!; PIDS+=($ROTATOR_PID)
wait_port "$GRPC_PORT"

# CPU ticks (utime+stime) of a process and its children's live threads: fields 14 and 15.
ticks() {
  local total=0 pid
  for pid in "$@" $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}
HZ=$(getconf CLK_TCK)

# One h2load round: prints "req/s p50_ms p99_ms cpu_us_per_call ok_calls".
round() { # name port pid concurrency calls
  local name=$1 port=$2 pid=$3 conc=$4 calls=$5 conns streams log before after
  if [ "$conc" -eq 1 ]; then conns=1; streams=1; else conns=$CONNS_64; streams=$((conc / CONNS_64)); fi
  log="$WORK/$name-$conc.log"
  rm -f "$log" # h2load appends
  before=$(ticks "$pid")
  h2load -n "$calls" -c "$conns" -m "$streams" -t 1 --log-file="$log" \
    -H 'content-type: application/grpc' -H 'te: trailers' -d "$WORK/body.bin" \
    "http://127.0.0.1:$port/rotator.v1.SecretRotationService/RotateSecrets" >"$WORK/h2load.out"
  after=$(ticks "$pid")
  python3 - "$log" "$WORK/h2load.out" "$before" "$after" "$HZ" <<'PY'
import re, sys
log, out, before, after, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rows = [line.split("\t") for line in open(log) if line.strip()]
ok = [int(r[2]) for r in rows if r[1] == "200"]
ok.sort()
text = open(out).read()
rps = float(re.search(r"finished in [^,]+, ([\d.]+) req/s", text).group(1))
pct = lambda p: ok[min(len(ok) - 1, round((len(ok) - 1) * p))] / 1000
cpu = (after - before) / hz * 1e6 / max(len(ok), 1)
print(f"{rps:.0f} {pct(0.5):.3f} {pct(0.99):.3f} {cpu:.0f} {len(ok)}")
PY
}

# Warm both (connections, rotator's token and pools).
round proxy "$PROXY_PORT" "$PROXY_PID" 64 2000 >/dev/null
round rotator "$GRPC_PORT" "$ROTATOR_PID" 64 2000 >/dev/null

RESULTS="$WORK/results"
: >"$RESULTS"
for r in $(seq 1 "$ROUNDS"); do
  for conc in 1 64; do
    calls=$CALLS_1; [ "$conc" -eq 64 ] && calls=$CALLS_64
    # Alternate which path goes first.
    if [ $((r % 2)) -eq 1 ]; then order="proxy rotator"; else order="rotator proxy"; fi
    for path in $order; do
      if [ "$path" = proxy ]; then port=$PROXY_PORT; pid=$PROXY_PID; else port=$GRPC_PORT; pid=$ROTATOR_PID; fi
      echo "$path $conc $(round "$path" "$port" "$pid" "$conc" "$calls")" | tee -a "$RESULTS" >&2
    done
  done
done

# PROFILE=FILE: one more rotator round at concurrency 64 under `perf record` (software clock,
# no hardware counters needed), its flat report (self time per symbol) written to FILE.
if [ -n "${PROFILE:-}" ]; then
  perf record -e cpu-clock -F 999 -o "$WORK/perf.data" -p "$ROTATOR_PID" 2>/dev/null & PERF_PID=$!
  sleep 0.5
  echo "rotator 64 $(round rotator "$GRPC_PORT" "$ROTATOR_PID" 64 "$CALLS_64")" >>"$RESULTS.profiled"
  kill -INT "$PERF_PID"; wait "$PERF_PID" || true
  perf report -i "$WORK/perf.data" --no-children --sort dso,symbol -F overhead,dso,sym --percent-limit 0.3 --stdio 2>/dev/null >"$PROFILE"
  perf report -i "$WORK/perf.data" --no-children --sort dso -F overhead,dso --stdio 2>/dev/null >>"$PROFILE"
fi

# Every rotator call left one durable `completed` event.
sleep 0.2
python3 - "$WORK/rotator-data/rotator.db" "$RESULTS" <<'PY'
import sqlite3, sys
db, results = sys.argv[1], sys.argv[2]
import os
answered = 2000 + sum(int(l.split()[6]) for f in (results, results + ".profiled") if os.path.exists(f)
                      for l in open(f) if l.startswith("rotator"))
rows = sqlite3.connect(db).execute("SELECT subject, COUNT(*) FROM outbox GROUP BY subject").fetchall()
print(f"\noutbox rows: {dict(rows)}; rotator calls answered 200 (incl. warm-up): {answered}")
if dict(rows) != {"postgres-credentials.completed": answered}:
    sys.exit("every answered call must leave exactly one completed event")
PY

python3 - "$RESULTS" "$ROUNDS" "$(nproc)" "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" <<'PY'
import statistics, sys
results, rounds, cores, commit = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
data = {}
for line in open(results):
    path, conc, rps, p50, p99, cpu, ok = line.split()
    data.setdefault((path, int(conc)), []).append((float(rps), float(p50), float(p99), float(cpu)))
med = {k: [statistics.median(col) for col in zip(*v)] for k, v in data.items()}
print(f"\nmedians of {rounds} alternating rounds, {cores} cores, at {commit}\n")
print("| concurrency | path | req/s | p50 (ms) | p99 (ms) | CPU per call (µs) |")
print("|---|---|---|---|---|---|")
for conc in (1, 64):
    for path, name in (("proxy", "nginx proxy hop"), ("rotator", "rotator")):
        rps, p50, p99, cpu = med[(path, conc)]
        print(f"| {conc} | {name} | {rps:.0f} | {p50:.3f} | {p99:.3f} | {cpu:.0f} |")
print("\n| concurrency | req/s ratio (rotator / proxy) | added p50 (ms) | CPU ratio (rotator / proxy) |")
print("|---|---|---|---|")
for conc in (1, 64):
    r, p = med[("rotator", conc)], med[("proxy", conc)]
    print(f"| {conc} | {r[0] / p[0]:.2f} | {r[1] - p[1]:.3f} | {r[3] / p[3]:.1f}× |")
PY
