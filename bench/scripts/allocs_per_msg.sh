#!/usr/bin/env bash
# Counts the server's heap allocations (libc malloc/calloc/realloc uprobes) during a
# bench run, to show the message path allocates per read buffer, not per message.
# Needs root and perf (Debian: linux-perf). Usage: bench/scripts/allocs_per_msg.sh [bench args]
set -euo pipefail
cd "$(dirname "$0")/../.."
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(fanout --subs 10 --size 16 --msgs 2000000)
cargo build --release -q -p natrium -p natrium-bench
libc=$(ldconfig -p | awk '/libc.so.6 .*x86-64/ {print $NF; exit}')
for f in malloc calloc realloc; do perf probe -q -x "$libc" "$f" 2>/dev/null || true; done
port=$((20000 + RANDOM % 20000))
taskset -c 0 target/release/natrium -a 127.0.0.1 -p "$port" --shards 1 >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
sleep 0.5
perf stat -x, -e probe_libc:malloc,probe_libc:calloc,probe_libc:realloc -p "$server" -o /tmp/allocs.$$ &
stat=$!
sleep 0.3
out=$(taskset -c 1 target/release/natrium-bench "${args[@]}" --url "nats://127.0.0.1:$port" --json)
kill -INT "$stat"; wait "$stat" 2>/dev/null || true
allocs=$(awk -F, '/probe_libc/ {s += $1} END {print s}' /tmp/allocs.$$)
rm -f /tmp/allocs.$$
msgs=$(printf '%s' "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); r=d["results"][0] if "results" in d else d; print(r.get("published", r.get("pub_msgs", 0)))' 2>/dev/null || echo "?")
echo "bench: ${args[*]}"
echo "server allocations during the run (incl. connection setup): $allocs"
echo "messages published: $msgs"
