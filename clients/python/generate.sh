#!/usr/bin/env bash
# Regenerates the Python messages and gRPC stub in clients/python/rotator/v1/ from
# proto/rotator/v1/*.proto with buf and local plugins only (no Buf Schema Registry):
#   - python, pyi: protoc's built-in generators, run by the protoc that grpcio-tools bundles
#     (`protoc_path: [python3, -m, grpc_tools.protoc]` in buf.gen.yaml);
#   - grpc_python: tools/protoc_gen_grpc_python.py, a plugin over the same grpcio-tools.
# google.protobuf types come with protobuf, google.rpc.Status/ErrorInfo with
# googleapis-common-protos: neither is generated here (only proto/rotator is, not the vendored
# proto/google/rpc files that reflection serves).
#
#   clients/python/generate.sh          rewrite the generated files
#   clients/python/generate.sh --check  fail if they differ from what proto/ generates
#
# Needs python3 and npm (for buf). Both generator versions are pinned below, so the output is the
# same on every machine; changing GRPCIO_TOOLS_VERSION changes the floors in pyproject.toml.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

GRPCIO_TOOLS_VERSION=1.74.0 # protoc 31.1: code for protobuf >= 6.31.1, grpcio >= 1.74.0
BUF_VERSION=1.75.0
venv=${ROTATOR_PYGEN_VENV:-/tmp/rotator-pygen-$GRPCIO_TOOLS_VERSION}
buf_dir=${ROTATOR_PYGEN_BUF_DIR:-/tmp/rotator-pygen-buf-$BUF_VERSION}

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import grpc_tools" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "grpcio-tools==$GRPCIO_TOOLS_VERSION"
fi
if [ ! -x "$buf_dir/node_modules/.bin/buf" ]; then
  mkdir -p "$buf_dir"
  (cd "$buf_dir" && npm install --silent --no-audit --no-fund "@bufbuild/buf@$BUF_VERSION" >/dev/null)
fi
buf() { PATH="$venv/bin:$PATH" "$buf_dir/node_modules/.bin/buf" "$@"; }

generated='*_pb2*.py*' # rotation_pb2.py, rotation_pb2.pyi, rotation_pb2_grpc.py, …
case "${1:-}" in
  --check)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    buf generate --template buf.gen.yaml --path proto/rotator -o "$tmp"
    # Compare the generated files only (the package's __init__.py files are written by hand).
    if ! diff -r -x '__init__.py' -x '__pycache__' "$tmp/clients/python/rotator" clients/python/rotator >"$tmp/diff"; then
      cat "$tmp/diff" >&2
      echo "clients/python: generated code is stale; run clients/python/generate.sh and commit" >&2
      exit 1
    fi
    echo "clients/python: generated code matches proto/"
    ;;
  "")
    # Start clean so a removed proto file leaves no stale module behind.
    find clients/python/rotator -name "$generated" -delete
    buf generate --template buf.gen.yaml --path proto/rotator
    echo "generated: $(cd clients/python && find rotator -name "$generated" | sort | tr '\n' ' ')"
    ;;
  *)
    echo "usage: $0 [--check]" >&2
    exit 64
    ;;
esac
