#!/usr/bin/env bash
# Issue 14's firehose benchmark: one node with the bus (`--bus` and `--store`) or alone, and the
# load tester, all on this machine. Run from the repository root after
# `cargo build --release -p buyline -p loadtest`:
#
#   bash benches/bus_firehose.sh bus              # or: local
#   bash benches/bus_firehose.sh bus --duration 10s firehose --rate 100000 --connections 2
#
# Starts (for `bus`) nats-server with JetStream and redis-server on free loopback ports with
# temporary dirs, then the node with `--firehose none`, then `loadtest --target NODE` with the
# arguments given (default: `--duration 10s firehose --rate 0 --connections 2`). When the load
# phase ends it waits until the node has read back every tweet it accepted
# (`buyline_tweets_decorated_total` = `buyline_tweets_ingested_total`), and prints the tweets
# accepted a second over the load phase, and the CPU a tweet of the node and of nats-server from
# the load's start to that point, and the rate end to end (accepted tweets over the time from
# the load's start until every one was read back). Everything it started is stopped by pid on
# exit.
#
# NATS_ENV: environment for nats-server, for experiments (e.g. NATS_ENV="GOGC=400").
# PROFILE=FILE: also `perf record -g` the node for 4 s from 3 s into the load, into FILE (shares
# only: the profiler costs CPU the figures then include).
# NATS_PROFILE=FILE: also take nats-server's own CPU profile (Go's pprof, over its `--profile`
# port) for the same 4 s, into FILE (gzipped profile.proto; `go tool pprof` reads it).
set -euo pipefail

mode="${1:-bus}"
shift || true
if [ "$#" -eq 0 ]; then
    set -- --duration 10s firehose --rate 0 --connections 2
fi
case "$mode" in
    bus | local) ;;
    *)
        echo "bus_firehose.sh: the first argument is bus or local, not $mode" >&2
        exit 2
        ;;
esac
bin=target/release
for program in "$bin/buyline" "$bin/loadtest"; do
    [ -x "$program" ] || {
        echo "bus_firehose.sh: $program missing (cargo build --release -p buyline -p loadtest)" >&2
        exit 1
    }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/buyline-busbench.XXXXXX")"
pids=()
stop_all() {
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap stop_all EXIT

free_port() {
    local port=$((20000 + RANDOM % 20000))
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        port=$((20000 + RANDOM % 20000))
    done
    echo "$port"
}

# Waits up to 30 s until `$1` succeeds.
wait_until() {
    for _ in $(seq 300); do
        if eval "$1" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "bus_firehose.sh: timed out waiting for: $1" >&2
    tail -n 20 "$work"/*.log >&2
    exit 1
}

node_args=()
nats_pid=""
if [ "$mode" = bus ]; then
    nats_port=$(free_port)
    nats_profile_args=()
    if [ -n "${NATS_PROFILE:-}" ]; then
        nats_profile_port=$(free_port)
        nats_profile_args=(--profile "$nats_profile_port")
    fi
    mkdir -p "$work/nats" "$work/redis"
    # shellcheck disable=SC2086 # NATS_ENV is a list of NAME=VALUE words
    env ${NATS_ENV:-} nats-server -js -sd "$work/nats" -a 127.0.0.1 -p "$nats_port" \
        "${nats_profile_args[@]}" >"$work/nats.log" 2>&1 &
    nats_pid=$!
    pids+=("$nats_pid")
    wait_until "(exec 3<>/dev/tcp/127.0.0.1/$nats_port)"
    redis_port=$(free_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/redis" --appendonly yes \
        --appendfsync always --maxmemory-policy noeviction --save "" >"$work/redis.log" 2>&1 &
    pids+=("$!")
    wait_until "redis-cli -p $redis_port ping"
    node_args=(--bus "nats://127.0.0.1:$nats_port" --store "redis://127.0.0.1:$redis_port")
fi
port=$(free_port)
"$bin/buyline" --listen "127.0.0.1:$port" --data-dir "$work/node" --firehose none --log warn \
    "${node_args[@]}" >"$work/node.log" 2>&1 &
node_pid=$!
pids+=("$node_pid")
wait_until "curl -sf http://127.0.0.1:$port/readyz"

metric() {
    curl -s "http://127.0.0.1:$port/metrics" | awk -v name="$1" '$1 ~ "^"name {s += $2} END {print s + 0}'
}
ticks() { if [ -n "$1" ]; then awk '{print $14 + $15}' "/proc/$1/stat"; else echo 0; fi; }

node0=$(ticks "$node_pid")
nats0=$(ticks "$nats_pid")
accepted0=$(metric buyline_tweets_ingested_total)
start=$(date +%s.%N)
if [ -n "${PROFILE:-}" ]; then
    (sleep 3 && perf record -F ${PROFILE_HZ:-999} --call-graph ${PROFILE_CALLS:-fp} -p "$node_pid" -o "$PROFILE" -- sleep 4 >/dev/null 2>&1) &
    pids+=("$!")
fi
if [ -n "${NATS_PROFILE:-}" ] && [ -n "$nats_pid" ]; then
    (sleep 3 && curl -s -o "$NATS_PROFILE" \
        "http://127.0.0.1:$nats_profile_port/debug/pprof/profile?seconds=4") &
    pids+=("$!")
fi
"$bin/loadtest" --target "http://127.0.0.1:$port" --plain "$@" | tail -n 12
load_end=$(date +%s.%N)
accepted=$(($(metric buyline_tweets_ingested_total) - accepted0))
# Every tweet accepted is read back from the stream before the CPU is counted.
for _ in $(seq 600); do
    [ "$(metric buyline_tweets_decorated_total)" -ge "$(metric buyline_tweets_ingested_total)" ] && break
    sleep 0.05
done
read_end=$(date +%s.%N)
node1=$(ticks "$node_pid")
nats1=$(ticks "$nats_pid")
read_back=$(metric buyline_tweets_decorated_total)
python3 - "$mode" "$start" "$load_end" "$accepted" "$read_back" "$node0" "$node1" "$nats0" "$nats1" \
    "$(getconf CLK_TCK)" "$read_end" <<'EOF'
import sys
mode, start, end, accepted, read_back, n0, n1, s0, s1, tck, read_end = sys.argv[1:]
wall = float(end) - float(start)
# Until the node had read back (decorated) every tweet it accepted: the rate it sustains
# end to end, which is lower when its reading fell behind during the load.
through = float(read_end) - float(start)
accepted = int(accepted)
per = lambda t0, t1: (float(t1) - float(t0)) / int(tck) / max(accepted, 1) * 1e6
line = f"{mode}: {accepted:,} tweets accepted, {accepted / wall:,.0f}/s over the load phase " \
       f"({wall:.1f} s); read back {int(read_back):,} by {through:.1f} s, " \
       f"{accepted / through:,.0f}/s end to end; node CPU {per(n0, n1):.2f} us a tweet"
if mode == "bus":
    line += f", nats-server {per(s0, s1):.2f} us a tweet"
print(line)
EOF
# The node runs with `--log warn`: anything it said is worth seeing next to the figures.
if [ -s "$work/node.log" ]; then
    echo "the node's log (last lines):"
    tail -n 20 "$work/node.log"
fi
