#!/usr/bin/env bash
# Counts the server's system calls and thread wake-ups per reservation attempt under a short
# flash sale: a buyline server on a free loopback port, `strace -f -c` attached to all its
# threads once it is ready, `loadtest flash-sale` against it, then the summary divided by the
# attempts the tester made, and the journal's wake-up counters (/metrics) divided by the durable
# records. strace slows every call a lot: read the counts, never the times.
#
#   bash benches/syscalls.sh [BIN_DIR] [flash-sale flags...]
#   bash benches/syscalls.sh target/debug --buyers 200 --stock 100000 --concurrency 64
#   bash benches/syscalls.sh target/release --fresh-connections --buyers 2000 --stock 500
#
# BIN_DIR holds `buyline` and `loadtest` (default target/debug: `cargo build --bin buyline -p
# loadtest`). The run lasts 5 s (BUYLINE_SYSCALLS_DURATION to change it). Needs strace (Debian's
# `strace`); `perf trace -s -p PID` gives the same counts per thread where perf is allowed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${1:-target/debug}"
shift || true
duration="${BUYLINE_SYSCALLS_DURATION:-5s}"
command -v strace >/dev/null || { echo "strace is not installed (apt-get install strace)"; exit 2; }

source benches/bench_server.sh
start_bench_server "$bin"

metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
# `-f` with `-p` attaches to every thread the server has and every one it starts.
strace -f -c -o "$work/strace.txt" -p "$server" 2>"$work/strace.log" &
tracer=$!
extra_pids="$tracer"
sleep 1
records0=$(metric buyline_journal_records_total); writer0=$(metric buyline_journal_writer_wakeups_total)
acker0=$(metric buyline_journal_acker_wakeups_total)
"$bin/loadtest" --target "http://127.0.0.1:$port" --plain --duration "$duration" \
    --json "$work/report.json" flash-sale "$@" | tail -n 25
sleep 0.5 # the journal counters are published every 250 ms
records1=$(metric buyline_journal_records_total); writer1=$(metric buyline_journal_writer_wakeups_total)
acker1=$(metric buyline_journal_acker_wakeups_total)
kill -INT "$tracer"
wait "$tracer" 2>/dev/null || true
extra_pids=""

python3 - "$work/strace.txt" "$work/report.json" \
    "${records0:-0}" "${records1:-0}" "${writer0:-0}" "${writer1:-0}" "${acker0:-0}" "${acker1:-0}" <<'EOF'
import json, sys
summary, report = sys.argv[1], sys.argv[2]
r0, r1, w0, w1, a0, a1 = (float(x) for x in sys.argv[3:9])
attempts = next(f["buyline"] for f in json.load(open(report))["figures"]
                if f["name"] == "reservation attempts")
calls = {}
for line in open(summary):
    parts = line.split()
    # "% time  seconds  usecs/call  calls  [errors]  syscall"
    if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
        calls[parts[-1]] = int(parts[3])
total = sum(calls.values())
print(f"\n{attempts:.0f} reservation attempts (tester's count; strace also saw the setup: tokens, product)")
print(f"server syscalls: {total} in all, {total / attempts:.1f} per attempt")
for name, n in sorted(calls.items(), key=lambda kv: -kv[1])[:15]:
    print(f"  {name:<18} {n:>10}  {n / attempts:6.2f} per attempt")
records = r1 - r0
if records > 0:
    print(f"journal: {records:.0f} durable records; writer wake-ups {w1 - w0:.0f} "
          f"({(w1 - w0) / records:.2f} per record), acknowledger wake-ups {a1 - a0:.0f} "
          f"({(a1 - a0) / records:.2f} per record)")
EOF
