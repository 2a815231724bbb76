#!/usr/bin/env bash
# Idle footprint of `rotator serve` on defaults (no Infisical, no NATS, no local rotations, SQLite
# store): starts the binary, waits until it logs "rotator serving", lets it settle, then prints
# VmRSS/VmHWM (kB) and the thread count from /proc. Repeats RUNS times (default 5).
# Usage: scripts/idle_rss.sh [BINARY]   (default target/release/rotator)
set -euo pipefail
bin=${1:-target/release/rotator}
runs=${RUNS:-5}
settle=${SETTLE_SECONDS:-3}
for _ in $(seq "$runs"); do
  dir=$(mktemp -d)
  log="$dir/stderr"
  (cd "$dir" && ROTATOR_LISTEN=127.0.0.1:0 ROTATOR_ADMIN_LISTEN=127.0.0.1:0 \
    exec "$bin" serve) 2>"$log" &
  pid=$!
  for _ in $(seq 200); do grep -q "rotator serving" "$log" 2>/dev/null && break; sleep 0.05; done
  sleep "$settle"
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
  threads=$(awk '/^Threads/ {print $2}' "/proc/$pid/status")
  echo "VmRSS_kB=$rss VmHWM_kB=$hwm threads=$threads"
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$dir"
done
