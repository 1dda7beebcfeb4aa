#!/usr/bin/env bash
# Where the server's CPU per reservation attempt goes, beside the Redis-Lua peer's: a buyline
# server on a free loopback port, `loadtest flash-sale --peer redis` against it, and `perf record`
# (kernel call chains) on the server during its phase and on the peer's `redis-server`
# (`appendfsync always`) during its own. Prints, for both, the CPU per attempt the tester
# measured, split into user space and the kernel's time under the functions that do the work
# (socket sends include the loopback delivery to the client, which the kernel does in the
# sender's context; fdatasync; epoll; futex; the scheduler), and
# `perf stat`'s context switches and fdatasyncs per attempt.
#
#   bash benches/cpu_profile.sh [BIN_DIR] [flash-sale flags...]
#   bash benches/cpu_profile.sh target/release --buyers 10000 --stock 2000000 --concurrency 64
#   bash benches/cpu_profile.sh target/release --buyers 10000 --stock 2000000 --concurrency 64 --transport http
#
# BIN_DIR holds `buyline` and `loadtest` (default target/release). Each phase lasts 10 s
# (BUYLINE_PROFILE_DURATION); the profiles take 4 s from its middle. Needs perf (Debian's
# `linux-perf`) with access to kernel samples (`kernel.perf_event_paranoid` <= 1, or root), and
# `redis-server`. Shares, not times: run it on an otherwise quiet machine.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${1:-target/release}"
shift || true
duration="${BUYLINE_PROFILE_DURATION:-10s}"
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)"; exit 2; }
command -v redis-server >/dev/null || { echo "redis-server is not installed"; exit 2; }

source benches/bench_server.sh
start_bench_server "$bin"

events=cpu-clock,context-switches,syscalls:sys_enter_fdatasync
"$bin/loadtest" --target "http://127.0.0.1:$port" --plain --duration "$duration" \
    --json "$work/report.json" flash-sale --peer redis "$@" >"$work/tester.log" 2>&1 &
tester=$!
extra_pids="$tester"
half=$(( ${duration%s} / 2 - 2 ))
sleep $(( half > 1 ? half : 1 ))
perf record -q -e cpu-clock -F 999 -g -p "$server" -o "$work/buyline.data" -- sleep 4 >/dev/null 2>&1 &
perf stat -e "$events" -x, -p "$server" -o "$work/buyline.stat" -- sleep 4 >/dev/null 2>&1
wait $!
# The peer's first redis-server is the `appendfsync always` one; it starts after buyline's phase.
redis=""
for _ in $(seq 600); do
    redis=$(pgrep -P "$tester" redis-server | head -n 1 || true)
    [ -n "$redis" ] && break
    sleep 0.1
done
[ -n "$redis" ] || { echo "the peer's redis-server never started"; cat "$work/tester.log"; exit 1; }
sleep $(( half > 1 ? half + 1 : 2 ))
perf record -q -e cpu-clock -F 999 -g -p "$redis" -o "$work/redis.data" -- sleep 4 >/dev/null 2>&1 &
perf stat -e "$events" -x, -p "$redis" -o "$work/redis.stat" -- sleep 4 >/dev/null 2>&1
wait $!
wait "$tester" || true
extra_pids=""
tail -n 8 "$work/tester.log"

for who in buyline redis; do
    perf report -i "$work/$who.data" --children --sort sym --stdio -g none 2>/dev/null \
        >"$work/$who.children" || true
    perf report -i "$work/$who.data" --no-children --sort dso --stdio -g none 2>/dev/null \
        >"$work/$who.dso" || true
done

python3 - "$work" <<'EOF'
import json, re, sys
work = sys.argv[1]
report = json.load(open(f"{work}/report.json"))
def figure(name):
    return next(f for f in report["figures"] if f["name"] == name)
cpu = figure("server CPU per reservation")
rate = figure("attempts/s")
peer_cpu = dict(cpu["peers"])
peer_rate = dict(rate["peers"])
always = next(p for p in peer_cpu if "always" in p)
# Kernel functions every path into the work goes through, whichever system call led there.
parts = [("socket sends", "tcp_sendmsg"), ("socket receives", "tcp_recvmsg"),
         ("fdatasync", "do_fsync"), ("file writes", "generic_perform_write"),
         ("epoll_wait", "do_epoll_wait"), ("futex", "do_futex"),
         ("eventfd writes", "eventfd_write"), ("sched_yield", "do_sched_yield"),
         ("scheduler (in any call)", "schedule")]
def shares(who):
    kernel = 0.0
    for line in open(f"{work}/{who}.dso"):
        m = re.match(r"\s*([\d.]+)%\s+\[kernel", line)
        if m:
            kernel += float(m.group(1))
    per_fn = {}
    for line in open(f"{work}/{who}.children"):
        m = re.match(r"\s*([\d.]+)%\s+[\d.]+%\s+\[k\] (\w+)$", line.rstrip())
        if m:
            per_fn[m.group(2)] = float(m.group(1))
    return kernel, per_fn
def stat(who):
    out = {}
    for line in open(f"{work}/{who}.stat"):
        parts = line.strip().split(",")
        if len(parts) > 2 and parts[0].replace(".", "").isdigit():
            out[parts[2]] = float(parts[0])
    return out
rows = [("buyline", cpu["buyline"], rate["buyline"], "buyline"),
        (always, peer_cpu[always], peer_rate[always], "redis")]
print()
print(f"{'':28}" + "".join(f"{name[:26]:>28}" for name, *_ in rows))
table = {}
for name, per_attempt, attempts, who in rows:
    kernel, per_fn = shares(who)
    st = stat(who)
    n = attempts * 4.0
    col = {"CPU per attempt (µs)": per_attempt,
           "  user space": per_attempt * (100 - kernel) / 100,
           "  kernel": per_attempt * kernel / 100}
    for label, fn in parts:
        col[f"    {label}"] = per_attempt * per_fn.get(fn, 0.0) / 100
    col["context switches / attempt"] = st.get("context-switches", 0) / n
    col["fdatasyncs / attempt"] = st.get("syscalls:sys_enter_fdatasync", 0) / n
    table[name] = col
for key in table[rows[0][0]]:
    print(f"{key:28}" + "".join(f"{table[name][key]:>28.3f}" for name, *_ in rows))
print("\n(each kernel line counts everything under that function: a send's loopback delivery to")
print(" the client, a sync's block I/O; the scheduler line overlaps the others)")
EOF
