#!/usr/bin/env bash
# Fuzzes each named target (default: all) until 10 million executions or SECONDS seconds
# (default 600), whichever comes first, and prints libFuzzer's closing figures.
# Stable Rust: cargo-fuzz runs without a sanitizer (`-s none`); our code has no `unsafe`.
#   cargo install cargo-fuzz && fuzz/run.sh [--seconds N] [target ...]
set -euo pipefail
cd "$(dirname "$0")"
seconds=600
if [ "${1:-}" = "--seconds" ]; then seconds=$2; shift 2; fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=($(ls fuzz_targets | sed 's/\.rs$//'))
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "regressions/$t"
    echo "== $t"
    # The committed corpus and regressions seed the run; new inputs go to corpus/$t.
    cargo fuzz run -O -s none "$t" "corpus/$t" "regressions/$t" -- \
        -max_total_time="$seconds" -runs=10000000 -print_final_stats=1 2>&1 |
        grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|Done|==|SUMMARY)|panicked" || true
done
