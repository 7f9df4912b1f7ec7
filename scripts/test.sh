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
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import openai, jsonschema, yaml' 2>/dev/null; then
  log "installing the Python test venv (openai, jsonschema, pyyaml)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'openai>=1.40' 'jsonschema>=4.20' 'pyyaml>=6'
fi
export TOLLGATE_TEST_PYTHON="$VENV/bin/python"

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
