#!/usr/bin/env bash
# The project's test command: every unit, integration, property and doc test.
set -euo pipefail
cd "$(dirname "$0")"
cargo test --workspace --all-features "$@"
