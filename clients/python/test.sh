#!/usr/bin/env bash
# Runs clients/python/example.py for real: the rotator binary on loopback with one local Redis
# rotation (the shared Redis on 127.0.0.1:6379, no password) and events on the shared NATS
# (127.0.0.1:4222, JetStream), under a token. Checks that
#   1. the checked-in generated code matches proto/ (needs npm for buf; skipped without it),
#   2. a rotation succeeds and its RotationCompleted event arrives,
#   3. an unknown rotation id ends in NOT_FOUND, reason NO_BACKEND, with the request id,
#   4. a wrong token ends in UNAUTHENTICATED.
# Prints "N passed, M failed" and exits non-zero on any failure. Called by scripts/test.sh.
#
# Environment: ROTATOR_BIN (default: cargo build --locked --bin rotator), REDIS_PORT (6379),
# NATS_URL (nats://127.0.0.1:4222), ROTATOR_PYCLIENT_VENV (a venv per checkout under /tmp).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

if ! command -v python3 >/dev/null; then
  echo "python client: python3 not found: skipping (0 passed, 0 failed)"
  exit 0
fi

check_name="python client"
. scripts/check_helpers.sh

# --- the client's environment: a venv per checkout, reinstalled only when pyproject.toml changes
venv=${ROTATOR_PYCLIENT_VENV:-/tmp/rotator-pyclient-$(printf %s "$root" | sha256sum | cut -c1-12)}
stamp=$(sha256sum clients/python/pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" &&
    "$venv/bin/pip" install -q --disable-pip-version-check -e clients/python &&
    echo "$stamp" >"$venv/.stamp" ||
    { fail "install clients/python into $venv (Debian: apt-get install python3-venv)"; finish; }
fi
py="$venv/bin/python"

# --- 1. generated code up to date
if command -v npm >/dev/null; then
  if out=$(clients/python/generate.sh --check 2>&1); then
    pass "generated code matches proto/"
  else
    fail "generated code matches proto/" "$out"
  fi
else
  echo "skip  generated code matches proto/ (npm not found: no buf)"
fi

# --- the server
rotator_bin

tmp=$(mktemp -d /tmp/rotator-pyclient-test.XXXXXX)
suffix=$(basename "$tmp" | cut -d. -f2 | tr -cd 'A-Za-z0-9')
prefix="pyclient.$suffix.events"
stream="PYCLIENT_$(printf %s "$suffix" | tr a-z A-Z)"
nats_url=${NATS_URL:-nats://127.0.0.1:4222}
redis_port=${REDIS_PORT:-6379}
rotation_id=$("$py" -c 'import uuid; print(uuid.uuid4())')
read -r grpc_port admin_port < <("$py" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
generated=$("$bin" token generate)
token=$(awk '$1 == "token" {print $2}' <<<"$generated")
token_hash=$(awk '$1 == "token_sha256" {print $2}' <<<"$generated")
server_pid=

cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" && wait "$server_pid" 2>/dev/null
  fi
  # The two slot users the rotation created on the shared Redis, and our stream on the shared NATS.
  if command -v redis-cli >/dev/null; then
    redis-cli -p "$redis_port" ACL DELUSER "rotator-$rotation_id-0" "rotator-$rotation_id-1" >/dev/null 2>&1
  fi
  "$py" - "$nats_url" "$stream" <<'EOF' >/dev/null 2>&1
import asyncio, sys, nats
async def main():
    nc = await nats.connect(sys.argv[1])
    try:
        await nc.jetstream().delete_stream(sys.argv[2])
    finally:
        await nc.close()
asyncio.run(main())
EOF
  rm -rf "$tmp"
}
trap cleanup EXIT

cat >"$tmp/rotator.toml" <<EOF
[[connections]]
name = "redis"
app = "redis"
host = "127.0.0.1"
port = $redis_port
username = "default"
password = "env:PYCLIENT_REDIS_ADMIN"   # the default user has no password here: any one logs in
tls = "disable"

[[rotations]]
id = "$rotation_id"
name = "py-redis"
type = "redis-credentials"
connection = "redis"
rotation_interval_days = 7
rotate_at_utc = "03:30"
auto_rotation = false
project_id = "proj"
environment = "test"
parameters = { permissionScope = "~pyclient:* +@read" }
secrets_mapping = { username = "APP_USER", password = "APP_PASSWORD" }

[auth]
mode = "enforce"

[[auth.identities]]
name = "python-example"
token_sha256 = "$token_hash"

[[auth.identities.permissions]]
actions = ["rotate", "read"]
types = ["redis-credentials"]
rotations = ["*"]
EOF

ROTATOR_LISTEN="127.0.0.1:$grpc_port" \
  ROTATOR_ADMIN_LISTEN="127.0.0.1:$admin_port" \
  ROTATOR_DATA_DIR="$tmp/data" \
  ROTATOR_ENCRYPTION_KEY="$("$bin" keygen)" \
  ROTATOR_NATS_URL="$nats_url" \
  ROTATOR_NATS_SUBJECT_PREFIX="$prefix" \
  ROTATOR_NATS_STREAM_NAME="$stream" \
  ROTATOR_NATS_STREAM_STORAGE=memory \
  PYCLIENT_REDIS_ADMIN=unused \
  "$bin" serve --config "$tmp/rotator.toml" >"$tmp/server.log" 2>&1 &
server_pid=$!

# Ready when /readyz answers 200 (first create of the Redis rotation runs before that).
if ! "$py" - "$admin_port" "$server_pid" <<'EOF'; then
import os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("rotator exited before it was ready")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)
sys.exit("rotator not ready after 60 s")
EOF
  fail "rotator ready" "$(tail -20 "$tmp/server.log")"
  finish
fi

example() {
  ROTATOR_SERVER="http://127.0.0.1:$grpc_port" ROTATOR_TOKEN="$token" \
    ROTATOR_NATS_URL="$nats_url" ROTATOR_NATS_SUBJECT_PREFIX="$prefix" \
    "$py" clients/python/example.py --event-timeout-seconds 20 "$@" 2>&1
}
# expect NAME STATUS OUTPUT REGEX...: the exit status and one line matching each regex.
expect() {
  local name=$1 want=$2 got=$3 out=$4 re
  shift 4
  if [ "$got" != "$want" ]; then
    fail "$name" "exit $got, want $want; output:"$'\n'"$out"
    return
  fi
  for re in "$@"; do
    if ! grep -Eq -- "$re" <<<"$out"; then
      fail "$name" "no line matches /$re/; output:"$'\n'"$out"
      return
    fi
  done
  pass "$name"
  printf '%s\n' "$out" | sed 's/^/      /'
}

# --- 2. rotate the local Redis rotation; its event arrives
rid="pyclient-$suffix-1"
out=$(example --request-id "$rid" redis-credentials "$rotation_id"); status=$?
expect "rotate a local rotation and receive its event" 0 "$status" "$out" \
  "^rotated redis-credentials $rotation_id \(py-redis\): active index 1, backend BACKEND_LOCAL, request $rid\$" \
  "^event rotator\.v1\.RotationCompleted on $prefix\.redis-credentials\.completed: rotation $rotation_id request $rid attempt 1 took [0-9.]+s active index 1\$"

# --- 3. an id no backend serves: NOT_FOUND, reason NO_BACKEND, request id printed
rid="pyclient-$suffix-2"
unknown=$("$py" -c 'import uuid; print(uuid.uuid4())')
out=$(example --request-id "$rid" redis-credentials "$unknown"); status=$?
expect "unknown rotation: reason NO_BACKEND handled" 1 "$status" "$out" \
  "^failed: NOT_FOUND NO_BACKEND request=$rid: " \
  "^  -> no backend serves this id"

# --- 4. a wrong token: UNAUTHENTICATED before any backend
out=$(example --token not-the-token redis-credentials "$rotation_id"); status=$?
expect "wrong token: reason UNAUTHENTICATED handled" 1 "$status" "$out" \
  "^failed: UNAUTHENTICATED UNAUTHENTICATED request=[^ ]+: " \
  "^  -> check the token"

finish
