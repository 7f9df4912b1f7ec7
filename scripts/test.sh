#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then runs them.
#   scripts/test.sh            everything (format, lints, unit, end-to-end, OpenAI SDK)
# Environment: CI=true turns "skipped: missing ../shared/specs" into failures.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

log() { printf '\n== %s\n' "$*"; }

# Python venv with the official OpenAI SDK (and the spec validator's libraries) for tests/python.
VENV="$ROOT/target/venv"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import openai, jsonschema, yaml, kubernetes_validate, promql_parser' 2>/dev/null; then
  log "installing the Python test venv (openai, jsonschema, pyyaml, kubernetes-validate, promql-parser)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'openai>=1.40' 'jsonschema>=4.20' 'pyyaml>=6' 'kubernetes-validate>=1.30' 'promql-parser>=0.4'
fi
export TOLLGATE_TEST_PYTHON="$VENV/bin/python"

# Services for the tests, installed from Debian when missing. Redis: the machine's server on 6379,
# started when none runs.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# ClickHouse for the usage tests: Debian's 18.16 server; each test starts its own on free ports.
command -v clickhouse-server >/dev/null 2>&1 || missing+=(clickhouse-server)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/tollgate-test-redis.log
  for _ in $(seq 1 50); do redis-cli -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

log "building the tollgate binary"
cargo build --quiet -p tollgate --bin tollgate

log "cargo test"
cargo test --workspace --lib --bins --tests --no-fail-fast 2>&1 | tee "$ROOT/target/test-output.log"

# One closing line for the whole suite.
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "\nall: %d passed, %d failed, %d skipped\n", p, f, s }' \
  "$ROOT/target/test-output.log"
