#!/usr/bin/env bash
# The project's test command: every unit, integration, property and doc test, including
# the Redis-backed limiter against a real redis-server (installed here when absent).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  echo "redis-server or redis-cli not found: installing them (Debian packages)"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq redis-server redis-tools >/dev/null
fi
cargo test --workspace --all-features "$@"
# The allocation counts hold without the `metrics` feature, whose facade allocates each
# metric's key: the all-features build above skips them, this one runs them (with spans
# compiled in, which allocate nothing while no subscriber wants them).
cargo test -p aegeantic --features tracing --test alloc "$@"
