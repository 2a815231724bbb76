#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time and prints libFuzzer's final stats.
# Not run in CI. Record the run in docs/fuzzing.md.
#
# Needs: a nightly toolchain (`rustup toolchain install nightly`; cargo-fuzz needs -Zsanitizer
# and sancov flags) and cargo-fuzz (`cargo install cargo-fuzz`).
#
#   scripts/fuzz.sh                 # 300 s per target, no sanitizer (the harnesses are safe Rust)
#   scripts/fuzz.sh 60              # 60 s per target
#   FUZZ_SANITIZER=address scripts/fuzz.sh 600   # with AddressSanitizer (slower build and runs)
#
# The corpus grows in fuzz/corpus/<target> (ignored by git), seeded from fuzz/seeds/<target>.
# A crash leaves its input in fuzz/artifacts/<target>/; reproduce it with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
set -euo pipefail

seconds=${1:-300}
sanitizer=${FUZZ_SANITIZER:-none}
targets=(config_toml upstream_json)
cd "$(dirname "$0")/../fuzz"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "error: no nightly toolchain; run: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "error: cargo-fuzz is not installed; run: cargo install cargo-fuzz" >&2
    exit 1
fi

cargo +nightly fuzz build -s "$sanitizer" 2>&1 | tail -n 1
mkdir -p logs
status=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    log="logs/$target.log"
    echo "== $target: ${seconds}s, sanitizer=$sanitizer"
    if cargo +nightly fuzz run -s "$sanitizer" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        echo "   no crash"
    else
        echo "   FAILED: see fuzz/$log and fuzz/artifacts/$target/"
        status=1
    fi
    grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb|stat::new_units_added)|DONE|cov:' "$log" | tail -n 5 | sed 's/^/   /'
    echo "   corpus: $(find "corpus/$target" -type f | wc -l) inputs"
done
exit $status
