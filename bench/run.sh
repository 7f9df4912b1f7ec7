#!/usr/bin/env bash
# Side-by-side latency of the fake upstream reached directly and through Tollgate, in one run:
# no limits, every limit on with in-memory quotas, and every limit on with Redis quotas.
#   bench/run.sh [quick]      quick: 3 s per row instead of 10
#   bench/run.sh usage        only the usage pipeline into ClickHouse
# Appends a dated section to bench/RESULTS.md and prints it. Needs Redis on 127.0.0.1:6379 for the
# Redis rows (scripts/test.sh starts one).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DUR=${DUR:-10}
[ "${1:-}" = quick ] && DUR=3

cargo build --release --quiet -p tollgate --bin tollgate
cargo build --release --quiet -p tollgate-bench --bins
if [ "${1:-}" = usage ]; then USAGE_ONLY=true; else USAGE_ONLY=false; fi
BIN="$ROOT/target/release"
WORK=$(mktemp -d)
FAKE=127.0.0.1:19100
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
wait_for() { for _ in $(seq 1 400); do "$@" >/dev/null 2>&1 && return 0; sleep 0.005; done; echo "timed out: $*" >&2; exit 1; }
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$1/status"; }

"$BIN/fake-upstream" "$FAKE" 2>"$WORK/fake.log" & PIDS+=($!)

# start_gateway NAME PORT STORE_TOML: starts one Tollgate, sets GW_PID and READY_MS.
start_gateway() {
  cat > "$WORK/$1.toml" <<TOML
[server]
listen = "127.0.0.1:$2"
admin_key_env = "BENCH_ADMIN"
$3
[usage]
path = "$WORK/$1-usage.db"
[[providers]]
name = "fake"
kind = "openai_compat"
base_url = "http://$FAKE/v1"
api_key_env = "BENCH_PROVIDER_KEY"
[[models]]
name = "gpt-test"
targets = [{ provider = "fake", model = "up-gpt" }]
[[pricing]]
model = "up-gpt"
input = "0.15"
output = "0.60"
TOML
  local start=$(date +%s%N)
  BENCH_ADMIN=bench-admin BENCH_PROVIDER_KEY=sk-bench TOLLGATE_LOG=warn \
    "$BIN/tollgate" serve --config "$WORK/$1.toml" 2>"$WORK/$1.log" & GW_PID=$!; PIDS+=($GW_PID)
  wait_for curl -sf "http://127.0.0.1:$2/healthz"
  READY_MS=$(( ($(date +%s%N) - start) / 1000000 ))
}
# make_key PORT BODY: prints a new key.
make_key() {
  curl -sf -X POST "http://127.0.0.1:$1/admin/keys" -H 'Authorization: Bearer bench-admin' \
    -H 'content-type: application/json' -d "$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}
LIMITS='{"name":"limited","limits":{"rpm":1000000000,"tpm":1000000000000,"max_parallel":1000000},"budgets":{"daily_usd":"1000000","monthly_usd":"1000000","total_usd":"1000000"}}'

start_gateway mem 19200 "[store]
path = \"$WORK/mem-keys.db\""
MEM_PID=$GW_PID; MEM_READY=$READY_MS
IDLE_RSS=$(rss "$MEM_PID")
wait_for curl -sf "http://$FAKE/v1/chat/completions" -d '{"model":"m","messages":[]}'
PLAIN_KEY=$(make_key 19200 '{"name":"plain"}')
MEM_KEY=$(make_key 19200 "$LIMITS")
REDIS_ROWS=false
if redis-cli -p 6379 ping >/dev/null 2>&1; then
  start_gateway redis 19300 "[store]
kind = \"redis\"
url = \"redis://127.0.0.1:6379/0\"
prefix = \"tgbench:$$:\""
  REDIS_KEY=$(make_key 19300 "$LIMITS")
  REDIS_ROWS=true
fi

# The usage pipeline into a private ClickHouse (Debian's 18.16 here): sustained events per second.
usage_rows() {
  command -v clickhouse-server >/dev/null 2>&1 || { echo "(no clickhouse-server: usage pipeline not measured)"; return; }
  local d="$WORK/ch"; mkdir -p "$d/data"
  cat > "$d/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$d/server.log</log><errorlog>$d/err.log</errorlog><size>10M</size><count>1</count></logger>
  <http_port>19123</http_port><tcp_port>19124</tcp_port><interserver_http_port>19125</interserver_http_port>
  <listen_host>127.0.0.1</listen_host><max_connections>256</max_connections><keep_alive_timeout>3</keep_alive_timeout>
  <max_concurrent_queries>100</max_concurrent_queries><mark_cache_size>67108864</mark_cache_size>
  <path>$d/data/</path><tmp_path>$d/data/tmp/</tmp_path><user_files_path>$d/data/user_files/</user_files_path>
  <format_schema_path>$d/data/format_schemas/</format_schema_path>
  <users_config>/etc/clickhouse-server/users.xml</users_config><default_profile>default</default_profile>
  <default_database>default</default_database><timezone>UTC</timezone>
</yandex>
XML
  clickhouse-server --config-file="$d/config.xml" >/dev/null 2>&1 & local ch=$!; PIDS+=($ch)
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:19123/?query=SELECT%201" >/dev/null && break; sleep 0.1; done
  echo
  echo "Usage pipeline (\`usage-throughput\`: synthetic events -> queue -> spool segments -> shipper -> ClickHouse"
  echo "$(curl -s 'http://127.0.0.1:19123/?query=SELECT%20version()') over HTTP), until the last event is confirmed:"
  echo
  echo "| events | fsync | batch | spooled | in ClickHouse | sustained | record() on the request path | dropped |"
  echo "|---|---|---|---|---|---|---|---|"
  "$BIN/usage-throughput" --clickhouse http://127.0.0.1:19123 --events 500000 --fsync always
  "$BIN/usage-throughput" --clickhouse http://127.0.0.1:19123 --events 500000 --fsync never
  kill "$ch" 2>/dev/null || true
}
if $USAGE_ONLY; then
  { echo; echo "## $(date -u +%Y-%m-%d) — \`bench/run.sh usage\` (2 cores, $(uname -m))"; usage_rows; } | tee -a "$ROOT/bench/RESULTS.md"
  exit 0
fi

DIRECT="http://$FAKE/v1/chat/completions"
MEM="http://127.0.0.1:19200/v1/chat/completions"
REDIS="http://127.0.0.1:19300/v1/chat/completions"
STREAM_BODY='{"model":"gpt-test","stream":true,"messages":[{"role":"user","content":"one two three four five six seven eight nine ten"}]}'
run() { "$BIN/loadgen" --duration "$DUR" --warmup 1 "$@"; }
rows() { # rows LOAD_ARGS...
  run --label direct --url "$DIRECT" "$@"
  run --label "tollgate, no limits" --url "$MEM" --key "$PLAIN_KEY" "$@"
  run --label "tollgate, limits in memory" --url "$MEM" --key "$MEM_KEY" "$@"
  if $REDIS_ROWS; then run --label "tollgate, limits in Redis" --url "$REDIS" --key "$REDIS_KEY" "$@"; fi
}
{
  echo
  echo "## $(date -u +%Y-%m-%d) — \`bench/run.sh ${1:-}\` (2 cores, $(uname -m), ${DUR}s per row)"
  echo
  echo "Fake upstream (\`fake-upstream\`) reached directly and through Tollgate (release build; key auth and"
  echo "SQLite usage events always on; \"limits\" = a key with rpm, tpm, parallel and three budgets, all checked"
  echo "and settled per request). Latencies in ms; open-loop rows count from each request's scheduled start."
  echo "Load driver, fake and gateway share the 2 cores."
  echo
  echo "| path | load | achieved rps | p50 | p90 | p99 | p99.9 | errors |"
  echo "|---|---|---|---|---|---|---|---|"
  rows --concurrency 1
  for rate in 500 1000 2000; do rows --rate $rate; done
  echo
  echo "Streaming chat (fake: about 12 chunks 2 ms apart); last two columns: time to first byte p50/p99."
  echo
  echo "| path | load | achieved rps | p50 | p90 | p99 | p99.9 | errors | ttfb p50 | ttfb p99 |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  rows --rate 200 --stream --body "$STREAM_BODY"
  echo
  echo "Tollgate (in-memory instance): start to first healthy answer ${MEM_READY} ms; RSS idle ${IDLE_RSS}, after the runs $(rss "$MEM_PID")."
  usage_rows
} | tee -a "$ROOT/bench/RESULTS.md"
