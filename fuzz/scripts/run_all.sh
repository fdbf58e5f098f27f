#!/usr/bin/env bash
# Runs each fuzz target in turn for up to RUNS executions or SECONDS of wall time,
# whichever comes first, and prints one summary line per target (executions reached,
# exec/s, crashes). Usage: fuzz/scripts/run_all.sh [RUNS] [SECONDS] [TARGET...]
# FUZZ_FLAGS passes build flags to cargo fuzz: "-s none -a" (no sanitizer, debug
# assertions: overflow checks) runs 2-5x faster than the default address sanitizer.
# MAX_LEN overrides the input size limit (config_parser's 64 KiB inputs run at ~5k/s;
# at 8 KiB it keeps ~30k/s).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-100000000}
secs=${2:-3600}
shift 2 || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(proto_parser route_parser connect_json monitor_query config_parser)
mkdir -p corpus logs
for t in "${targets[@]}"; do
  max_len=${MAX_LEN:-4096}
  [ "$t" = config_parser ] && max_len=${MAX_LEN:-65536}
  mkdir -p "corpus/$t"
  log="logs/$t.log"
  rc=0
  nice -n 19 cargo +nightly fuzz run ${FUZZ_FLAGS:-} "$t" "corpus/$t" "seeds/$t" -- \
      -rss_limit_mb=2048 -timeout=10 -max_len=$max_len \
      -runs="$runs" -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1 || rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  echo "$t: rc=$rc executions=$execs exec/s=$rate $(ls artifacts/$t 2>/dev/null | wc -l) artifacts"
done
