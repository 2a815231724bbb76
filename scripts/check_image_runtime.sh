#!/usr/bin/env bash
# Runs the rotator binary the way the container image's final stage runs it, without a
# container engine (none runs on the project machines): in a chroot holding only what
# gcr.io/distroless/cc-debian12 gives it that it could use (Debian 12's libc6, libgcc-s1 and
# libssl3, the CA bundle, a nonroot user 65532, /tmp), with no shell and no other program, as
# uid 65532, its configuration at /etc/rotator/rotator.toml and its data in /var/lib/rotator.
# Checks that
#   1. without libssl3 in the root the binary does not start (the check sees a missing library),
#   2. it starts and /readyz answers 200,
#   3. a local Redis rotation (a private redis-server on loopback) issues and rotates a
#      credential that logs in: the store, sealing and a driver work from that root,
#   4. it runs as 65532 and its store is in /var/lib/rotator,
#   5. SIGTERM drains and exits 0 within shutdown_grace_seconds + 5 s (the image's STOPSIGNAL).
# Prints "image runtime: N passed, M failed"; exits non-zero on any failure. Called by
# scripts/test.sh; needs root (chroot), apt-get download (Debian's packages), redis-server.
#
# Environment: ROTATOR_BIN (default: cargo build --locked --bin rotator).
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

check_name="image runtime"
. scripts/check_helpers.sh
rotator_bin

tmp=$(mktemp -d /tmp/rotator-image-runtime.XXXXXX)
root="$tmp/root"
server_pid= redis_pid=
cleanup() {
  for pid in $server_pid $redis_pid; do
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_ports() {
  python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))'
}
read -r grpc_port admin_port redis_port < <(free_ports)

# --- the root: the packages' files only, no maintainer scripts (distroless does the same)
[ "$(id -u)" = 0 ] || { fail "runs as root (chroot, and a user switch to 65532)"; finish; }
download() { (cd "$tmp/debs" && apt-get download -qq libc6 libgcc-s1 libssl3 2>/dev/null); }
mkdir -p "$tmp/debs"
# A fresh machine may have no package lists yet.
download || { apt-get update -qq && download; } ||
  { fail "apt-get download libc6 libgcc-s1 libssl3"; finish; }
for deb in "$tmp"/debs/*.deb; do dpkg-deb -x "$deb" "$root"; done
mkdir -p "$root/etc/ssl/certs" "$root/etc/rotator" "$root/usr/local/bin" "$root/tmp"
chmod 1777 "$root/tmp"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
# As the Dockerfile's build stage: `install -d -o 65532 -g 65532 -m 0700 /out/data`.
install -d -o 65532 -g 65532 -m 0700 "$root/var/lib/rotator"
install -m 0755 "$bin" "$root/usr/local/bin/rotator"
shells=$(find "$root" -name sh -o -name bash -o -name dash -o -name busybox)
[ -z "$shells" ] || { fail "the root has no shell" "$shells"; finish; }

# --- 1. a missing library stops the binary: the check would see one the image lacks
libssl=$(find "$root" -name 'libssl.so.3' | head -1)
mv "$libssl" "$tmp/libssl.so.3"
if out=$(chroot --userspec=65532:65532 "$root" /usr/local/bin/rotator --version 2>&1); then
  fail "without libssl3 the binary does not start" "$out"
else
  pass "without libssl3 the binary does not start"
fi
mv "$tmp/libssl.so.3" "$libssl"

# --- the target: a private Redis on loopback, stopped by PID
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
  --dir "$tmp" --logfile "$tmp/redis.log" &
redis_pid=$!

rotation_id=$(python3 -c 'import uuid; print(uuid.uuid4())')
grace=5
cat >"$root/etc/rotator/rotator.toml" <<EOF
listen = "127.0.0.1:$grpc_port"
admin_listen = "127.0.0.1:$admin_port"
data_dir = "/var/lib/rotator"
shutdown_grace_seconds = $grace
log_format = "json"

[[connections]]
name = "redis"
app = "redis"
host = "127.0.0.1"
port = $redis_port
username = "default"
password = "env:REDIS_ADMIN"   # the private server's default user has no password
tls = "disable"

[[rotations]]
id = "$rotation_id"
name = "image-redis"
type = "redis-credentials"
connection = "redis"
rotation_interval_days = 7
rotate_at_utc = "03:30"
auto_rotation = false
parameters = { permissionScope = "~image:* +get" }
secrets_mapping = { username = "APP_USER", password = "APP_PASSWORD" }
EOF

for _ in $(seq 1 100); do
  redis-cli -p "$redis_port" PING >/dev/null 2>&1 && break
  sleep 0.1
done

# --- 2. start as the image does: ENTRYPOINT + CMD, uid 65532, nothing in the environment but
# what a deployer passes (the key and the admin password)
env -i ROTATOR_ENCRYPTION_KEY="$("$bin" keygen)" REDIS_ADMIN=unused \
  "$(command -v chroot)" --userspec=65532:65532 "$root" \
  /usr/local/bin/rotator serve --config /etc/rotator/rotator.toml >"$tmp/serve.log" 2>&1 &
server_pid=$!
ready=
for _ in $(seq 1 300); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin_port/readyz")" = 200 ]; then
    ready=1
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.2
done
if [ -n "$ready" ]; then
  pass "starts in the root and /readyz answers 200"
else
  fail "starts in the root and /readyz answers 200" "$(tail -20 "$tmp/serve.log")"
  finish
fi

# --- 3. a rotation, and its credential logs in
export ROTATOR_SERVER="http://127.0.0.1:$grpc_port"
if out=$("$bin" rotate redis-credentials "$rotation_id" 2>&1) &&
  creds=$("$bin" credentials redis-credentials "$rotation_id" --json 2>&1); then
  read -r user password < <(python3 -c '
import json, sys
answer = json.loads(sys.argv[1])
active = answer["generatedCredentials"][answer["activeIndex"]]
print(active["username"], active["password"])' "$creds" 2>/dev/null)
  login=$(redis-cli -p "$redis_port" --no-auth-warning --user "$user" --pass "$password" GET image:x 2>&1)
  if [ -n "${user:-}" ] && ! grep -qi "WRONGPASS\|NOAUTH\|ERR" <<<"$login"; then
    pass "a rotation from the root stores a credential that logs in"
  else
    fail "a rotation from the root stores a credential that logs in" "login: $login"
  fi
else
  fail "a rotation from the root stores a credential that logs in" "$out"
fi

# --- 4. who it runs as, where its store is
uid=$(awk '/^Uid:/ {print $2}' "/proc/$server_pid/status" 2>/dev/null)
store_owner=$(stat -c %u "$root/var/lib/rotator/rotator.db" 2>/dev/null)
if [ "$uid" = 65532 ] && [ "$store_owner" = 65532 ]; then
  pass "runs as 65532 with its store in /var/lib/rotator"
else
  fail "runs as 65532 with its store in /var/lib/rotator" "uid=$uid store owner=$store_owner"
fi

# --- 5. SIGTERM drains and exits 0 within the grace the image's users are told to give
kill -TERM "$server_pid"
code=
for _ in $(seq 1 $(((grace + 5) * 10))); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    wait "$server_pid"
    code=$?
    break
  fi
  sleep 0.1
done
[ -n "$code" ] && server_pid=
if [ "$code" = 0 ]; then
  pass "SIGTERM drains and exits 0 within shutdown_grace_seconds + 5 s"
else
  fail "SIGTERM drains and exits 0 within shutdown_grace_seconds + 5 s" "exit: ${code:-still running}"
fi

# No generated value in what it printed.
if [ -n "${password:-}" ] && grep -qF "$password" "$tmp/serve.log"; then
  fail "the generated password is not in the server's output"
fi
finish
