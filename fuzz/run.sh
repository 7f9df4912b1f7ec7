#!/usr/bin/env bash
# Fuzzes every parser that reads provider bytes, each target for a fixed number of executions.
#
#   fuzz/run.sh [RUNS] [TARGET...]     (RUNS default 1000000; targets default: all of `cargo fuzz list`)
#
# Seeds come from tests/fixtures (every provider's answer and stream fixtures, each prefixed with the
# selector bytes the target reads first), plus a dictionary of every JSON key and string in them.
# Prints one line per target and appends a dated table to fuzz/RESULTS.md. Crashes are saved under
# fuzz/artifacts/<target>/ and make the script exit non-zero.
set -euo pipefail
cd "$(dirname "$0")"
runs=${1:-1000000}
shift || true

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo fuzz passes nightly-only flags (-Zsanitizer); this machine has one stable toolchain.
export RUSTC_BOOTSTRAP=1

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi

# Dictionary: every quoted string in the fixtures (keys, event names, enum values).
mkdir -p target
grep -rhoaE '"[A-Za-z_:.-]{2,40}"' ../tests/fixtures | sort -u | sed 's/"/\\"/g; s/.*/"&"/' > target/json.dict

seed() { # seed TARGET: fixture files, each behind every selector prefix 0..23
  local dir=corpus/$1 i f n=0
  mkdir -p "$dir"
  case $1 in
    sse) for f in ../tests/fixtures/*/*.sse; do { printf '\x03'; cat "$f"; } > "$dir/fx$((n++))"; done ;;
    eventstream) for f in ../tests/fixtures/*/*.eventstream; do [ -e "$f" ] || continue; { printf '\x07'; cat "$f"; } > "$dir/fx$((n++))"; done ;;
    provider_response|provider_stream)
      # Selector bytes: kind index, then for answers the operation (00 chat, 02 embeddings, 80 chat
      # to a `claude` model) and a status byte; for streams the flags (02 usage wanted, 04 `claude`)
      # and the split step.
      local ext=json modes='00 02 80' tail=00
      if [ "$1" = provider_stream ]; then ext='{sse,eventstream}' modes='02 06' tail=3f; fi
      for f in $(eval "ls ../tests/fixtures/*/*.$ext" 2>/dev/null); do
        for i in $(seq 0 23); do
          for m in $modes; do
            { printf "\\x$(printf %02x "$i")\\x$m\\x$tail"; cat "$f"; } > "$dir/fx$((n++))"
          done
        done
      done ;;
  esac
}

results=()
status=0
for t in "${targets[@]}"; do
  seed "$t"
  log=target/$t.log
  echo "== $t: $runs runs"
  if cargo fuzz run "$t" "corpus/$t" -- -runs="$runs" -max_len=8192 -dict=target/json.dict \
      -print_final_stats=1 >"$log" 2>&1; then
    verdict=ok
  else
    verdict="CRASH (see $log, fuzz/artifacts/$t)"
    status=1
  fi
  done_line=$(grep -E '^Done [0-9]+ runs' "$log" | tail -1 || true)
  execs=$(grep -E 'stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -1)
  secs=$(echo "$done_line" | sed -nE 's/.* in ([0-9]+) second.*/\1/p')
  cov=$(grep -E '^#[0-9]+.*(DONE|INITED).*cov: ' "$log" | tail -1 | sed -nE 's/.*cov: ([0-9]+).*/\1/p')
  echo "   $verdict: ${execs:-?} executions in ${secs:-?} s, coverage ${cov:-?} edges"
  results+=("| $t | ${execs:-?} | ${secs:-?} | ${cov:-?} | $verdict |")
done

{
  echo
  echo "## $(date -u +%Y-%m-%d) — \`fuzz/run.sh $runs${targets:+ ${targets[*]}}\` ($(nproc) cores)"
  echo
  echo "| target | executions | seconds | coverage (edges) | result |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${results[@]}"
} >> RESULTS.md
exit $status
