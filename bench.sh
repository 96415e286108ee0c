#!/usr/bin/env bash
# Aegeantic against governor, leaky-bucket and backon, ending in a table of ratios.
#
# The benchmark is its own package (aegeantic/benches) and must be selected alone: run from
# the workspace root without `-p`, cargo would also build aegeantic's dev-dependencies and
# so tokio's `test-util`, which moves the limiter onto tokio's clock (see
# aegeantic/src/resilience/limiter/clock.rs). Extra arguments go to the benchmark, e.g. a
# filter: ./bench.sh try_acquire
set -euo pipefail
cd "$(dirname "$0")"
cargo bench -p aegeantic-bench --bench compare -- "$@"
