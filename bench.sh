#!/usr/bin/env bash
# Aegeantic against governor, leaky-bucket and backon, ending in a table of ratios; then the
# cost of aegeantic's metrics, from a second build that has them.
#
# The benchmark is its own package (aegeantic/benches) and must be selected alone: run from
# the workspace root without `-p`, cargo would also build aegeantic's dev-dependencies and
# so tokio's `test-util`, which moves the limiter onto tokio's clock (see
# aegeantic/src/resilience/limiter/clock.rs). Extra arguments go to the benchmark, e.g. a
# filter: ./bench.sh try_acquire
#
# A cargo feature is on or off for a whole binary, so the metrics rows take two runs: the
# first (without the feature, as users who do not ask for metrics build it) saves its
# results; the second, built with the bench package's `metrics` feature (a no-op recorder
# installed), runs the stream, one-shot and allocation parts again and sets itself beside
# the first (BENCHMARKS.md, "Metrics"). Without arguments both run; `./bench.sh metrics`
# runs only those parts, both ways; any other filter runs the first alone. Both runs'
# results are kept in target/bench-results/.
set -euo pipefail
cd "$(dirname "$0")"
results="${CARGO_TARGET_DIR:-$PWD/target}/bench-results"
mkdir -p "$results"
metrics_parts='stream_per_item|retry_one_shot|allocs'

args=("$@")
compare_metrics=false
if [ $# -eq 0 ]; then
  compare_metrics=true
elif [ "$1" = metrics ]; then
  compare_metrics=true
  args=("$metrics_parts" "${@:2}")
fi

AEGEANTIC_BENCH_SAVE="$results/metrics-off.tsv" \
  cargo bench -p aegeantic-bench --bench compare -- "${args[@]}"
if $compare_metrics; then
  echo
  echo "=== the same parts with aegeantic's metrics on (no-op recorder) ==="
  AEGEANTIC_BENCH_BASELINE="$results/metrics-off.tsv" AEGEANTIC_BENCH_SAVE="$results/metrics-on.tsv" \
    cargo bench -p aegeantic-bench --features metrics --bench compare -- "$metrics_parts"
fi
