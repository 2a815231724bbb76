# Shared by the shell checks scripts/test.sh runs (clients/python/test.sh,
# scripts/check_image_runtime.sh): counting passed and failed steps, and the binary under test.
# Source it from the repository root after setting check_name (the summary line's name).

passed=0 failed=0
pass() { passed=$((passed + 1)); echo "ok    $1"; }
fail() { failed=$((failed + 1)); echo "FAIL  $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/      /'; }
finish() { echo "$check_name: $passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit $?; }

# Sets bin to $ROTATOR_BIN, else to a debug build of this checkout (built if needed).
rotator_bin() {
  if [ -n "${ROTATOR_BIN:-}" ]; then
    bin=$ROTATOR_BIN
    return
  fi
  cargo build --locked --quiet --bin rotator || { fail "cargo build --bin rotator"; finish; }
  bin=${CARGO_TARGET_DIR:-$PWD/target}/debug/rotator
}
