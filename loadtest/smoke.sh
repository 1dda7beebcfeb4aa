#!/usr/bin/env bash
# A short run of every load-test scenario against a buyline server this script starts, and a
# flash sale over three nodes on one Redis (examples/cluster.sh), for CI:
# `bash loadtest/smoke.sh [TARGET_DIR/PROFILE]` (default target/debug, after `cargo build` of
# both binaries). Each scenario runs a few seconds; loadtest exits non-zero when a check fails
# (oversold > 0, a lost frame, any error) or a --threshold does, which fails this script (but for
# the one threshold run that must fail). No timing is asserted.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${1:-target/debug}"
buyline="$bin/buyline"
loadtest="$bin/loadtest"

work=$(mktemp -d)
# A free loopback port: nothing answers on it.
free_port() {
    local port=$((20000 + RANDOM % 10000))
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        port=$((20000 + RANDOM % 10000))
    done
    echo "$port"
}
port=$(free_port)
target="http://127.0.0.1:$port"

# The server keeps an fd per connection; it raises its soft limit to the hard one itself, and
# this does the same for the tester.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$buyline" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --firehose none --log warn \
    >"$work/server.log" 2>&1 &
server=$!
cluster=""
stop_server() {
    # Only what this script started, by pid: the server, and examples/cluster.sh (which stops
    # its own Redis and nodes).
    for pid in "$server" $cluster; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap stop_server EXIT

# Wait for the port (loadtest then waits for /readyz itself).
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done

run() {
    echo
    echo "-- loadtest $*"
    if ! "$loadtest" --target "$target" --plain "$@"; then
        echo "loadtest $* FAILED; server log tail:"
        tail -n 20 "$work/server.log"
        exit 1
    fi
}

run --duration 2s firehose --rate 2000 --connections 2
run --duration 2s firehose --rate 2000 --connections 2 --ingest http --batch 100
run --duration 3s fanout --subscribers 50 --rate 1000 --expect-no-loss --peer nats
run --duration 5s flash-sale --buyers 50 --stock 2000 --concurrency 32 --checkout --peer redis
run --duration 5s flash-sale --buyers 50 --stock 1000 --concurrency 32 --transport http --checkout
run --duration 3s flash-sale --buyers 50 --stock 500 --concurrency 16 --fresh-connections --peer redis
run --duration 2s connections --connections 2000 --hold 1s

# Open loop: latency from intended send times, and thresholds. One set that must hold, and one
# no server can meet (a median under a microsecond), which must exit 3 (a threshold failed, every
# check passed): the exit status is what is checked, not a speed.
run --duration 2s firehose --arrival-rate 1000 --connections 2 --ingest http --batch 50 \
    --threshold 'error_rate<=0'
run --duration 3s flash-sale --buyers 50 --stock 100000 --arrival-rate 500 --max-in-flight 32 \
    --threshold 'error_rate<0.01' --threshold 'p99<60s' --threshold 'rate>0'
echo
echo "-- loadtest flash-sale --arrival-rate with a threshold that must fail"
status=0
"$loadtest" --target "$target" --plain --duration 1s flash-sale --buyers 10 --stock 100000 \
    --arrival-rate 200 --threshold 'p99<60s' --threshold 'p50<1us' || status=$?
if [ "$status" != 3 ]; then
    echo "a failing --threshold exited $status, not 3"
    exit 1
fi
run --duration 6s --json "$work/soak.json" --plot "$work/plots" soak --subscribers 50 --rate 500 --buyers 20 --stock 500 --idle 200 --checkout
test -s "$work/soak.json"
ls "$work/plots"/*.svg >/dev/null

# Three nodes on one Redis (examples/cluster.sh), one flash sale spread over them.
if command -v redis-server >/dev/null 2>&1; then
    nodes=("$(free_port)" "$(free_port)" "$(free_port)")
    REDIS_PORT="$(free_port)" BUYLINE_PORTS="${nodes[*]}" BUYLINE="$buyline" \
        BUYLINE_ARGS="--firehose none --log warn" bash examples/cluster.sh >"$work/cluster.log" 2>&1 &
    cluster=$!
    for _ in $(seq 600); do
        grep -q "^cluster ready" "$work/cluster.log" && break
        kill -0 "$cluster" 2>/dev/null || break
        sleep 0.1
    done
    if ! grep -q "^cluster ready" "$work/cluster.log"; then
        echo "examples/cluster.sh did not get ready:"
        cat "$work/cluster.log"
        exit 1
    fi
    targets="http://127.0.0.1:${nodes[0]},http://127.0.0.1:${nodes[1]},http://127.0.0.1:${nodes[2]}"
    echo
    echo "-- loadtest --targets $targets flash-sale (three nodes, one store)"
    if ! "$loadtest" --targets "$targets" --plain --duration 5s \
        flash-sale --buyers 30 --stock 500 --concurrency 16 --checkout; then
        echo "the three-node flash sale FAILED"
        exit 1
    fi
    kill "$cluster" && wait "$cluster" || true
    cluster=""
elif [ "${CI:-}" = "true" ]; then
    echo "redis-server is missing, and CI=true requires it"
    exit 1
else
    echo
    echo "*** SKIPPED: the three-node flash sale (redis-server is not installed) ***"
fi
echo
echo "loadtest smoke: ok"
