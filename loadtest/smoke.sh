#!/usr/bin/env bash
# A short run of every load-test scenario against a buyline server this script starts, for CI:
# `bash loadtest/smoke.sh [TARGET_DIR/PROFILE]` (default target/debug, after `cargo build` of
# both binaries). Each scenario runs a few seconds; loadtest exits non-zero when a check fails
# (oversold > 0, a lost frame, any error), which fails this script. No timing is asserted.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${1:-target/debug}"
buyline="$bin/buyline"
loadtest="$bin/loadtest"

work=$(mktemp -d)
# A free loopback port: nothing answers on it.
port=$((20000 + RANDOM % 10000))
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    port=$((20000 + RANDOM % 10000))
done
target="http://127.0.0.1:$port"

# The server keeps an fd per connection; it raises its soft limit to the hard one itself, and
# this does the same for the tester.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$buyline" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --firehose none --log warn \
    >"$work/server.log" 2>&1 &
server=$!
stop_server() {
    # Only the server this script started, by its pid.
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
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
run --duration 2s connections --connections 2000 --hold 1s
run --duration 6s --json "$work/soak.json" --plot "$work/plots" soak --subscribers 50 --rate 500 --buyers 20 --stock 500 --idle 200 --checkout
test -s "$work/soak.json"
ls "$work/plots"/*.svg >/dev/null
echo
echo "loadtest smoke: ok"
