#!/usr/bin/env bash
# Side-by-side latency of the fake upstream reached directly and through Tollgate, in one run.
#   bench/run.sh [quick]      quick: shorter runs (for a smoke check)
# Appends a dated section to bench/RESULTS.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DUR=${DUR:-10}
[ "${1:-}" = quick ] && DUR=3

cargo build --release --quiet -p tollgate --bin tollgate
cargo build --release --quiet -p tollgate-bench --bins
BIN="$ROOT/target/release"
WORK=$(mktemp -d)
FAKE=127.0.0.1:19100
GW_PORT=19200
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$WORK"; }
PIDS=()
trap cleanup EXIT

"$BIN/fake-upstream" "$FAKE" 2>"$WORK/fake.log" & PIDS+=($!)
cat > "$WORK/tollgate.toml" <<TOML
[server]
listen = "127.0.0.1:$GW_PORT"
admin_key_env = "BENCH_ADMIN"
[store]
path = "$WORK/keys.db"
[usage]
path = "$WORK/usage.db"
[[providers]]
name = "fake"
kind = "openai_compat"
base_url = "http://$FAKE/v1"
api_key_env = "BENCH_PROVIDER_KEY"
[[models]]
name = "gpt-test"
targets = [{ provider = "fake", model = "up-gpt" }]
TOML
START_NS=$(date +%s%N)
BENCH_ADMIN=bench-admin BENCH_PROVIDER_KEY=sk-bench TOLLGATE_LOG=warn \
  "$BIN/tollgate" serve --config "$WORK/tollgate.toml" 2>"$WORK/gw.log" & GW=$!; PIDS+=($GW)
wait_for() { for _ in $(seq 1 400); do "$@" >/dev/null 2>&1 && return 0; sleep 0.005; done; echo "timed out: $*" >&2; exit 1; }
wait_for curl -sf "http://127.0.0.1:$GW_PORT/healthz"
READY_MS=$(( ($(date +%s%N) - START_NS) / 1000000 ))
wait_for curl -sf "http://$FAKE/v1/chat/completions" -d '{"model":"m","messages":[]}'
KEY=$(curl -sf -X POST "http://127.0.0.1:$GW_PORT/admin/keys" -H 'Authorization: Bearer bench-admin' \
  -H 'content-type: application/json' -d '{"name":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
rss() { awk '/VmRSS/ {print $2/1024 " MiB"}' "/proc/$1/status"; }
IDLE_RSS=$(rss "$GW")

DIRECT="http://$FAKE/v1/chat/completions"
VIA="http://127.0.0.1:$GW_PORT/v1/chat/completions"
STREAM_BODY='{"model":"gpt-test","stream":true,"messages":[{"role":"user","content":"one two three four five six seven eight nine ten"}]}'
run() { "$BIN/loadgen" --duration "$DUR" --warmup 1 "$@"; }
{
  echo
  echo "## $(date -u +%Y-%m-%d) — \`bench/run.sh ${1:-}\` (2 cores, $(uname -m), ${DUR}s per row)"
  echo
  echo "Fake upstream (\`tollgate-bench\` fake-upstream) reached directly and through Tollgate (release build,"
  echo "key auth, SQLite usage events on). Latencies in ms; open-loop rows count from each request's scheduled start."
  echo
  echo "| path | load | achieved rps | p50 | p90 | p99 | p99.9 | errors |"
  echo "|---|---|---|---|---|---|---|---|"
  run --label direct --url "$DIRECT" --concurrency 1
  run --label tollgate --url "$VIA" --key "$KEY" --concurrency 1
  for rate in 500 1000 2000; do
    run --label direct --url "$DIRECT" --rate $rate
    run --label tollgate --url "$VIA" --key "$KEY" --rate $rate
  done
  echo
  echo "Streaming chat (fake: 2 ms between chunks, about 12 chunks); last two columns: time to first byte p50/p99."
  echo
  echo "| path | load | achieved rps | p50 | p90 | p99 | p99.9 | errors | ttfb p50 | ttfb p99 |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  run --label direct --url "$DIRECT" --rate 200 --stream --body "$STREAM_BODY"
  run --label tollgate --url "$VIA" --key "$KEY" --rate 200 --stream --body "$STREAM_BODY"
  echo
  echo "Tollgate process: start to first healthy answer ${READY_MS} ms; RSS idle ${IDLE_RSS}, after the runs $(rss "$GW")."
} | tee -a "$ROOT/bench/RESULTS.md"
