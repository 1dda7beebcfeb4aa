# Sourced by the bench scripts (syscalls.sh, cpu_profile.sh): a buyline server on a free
# loopback port with a data dir of its own, and the cleanup that stops what the script started.
#
#   source benches/bench_server.sh
#   start_bench_server "$bin"      # sets work (a temp dir), port and server (its pid)
#   extra_pids="$tracer"           # anything else to stop on exit, by pid
#
# On exit, every pid in $extra_pids and the server are killed (only those, by pid) and the temp
# dir removed.

extra_pids=""

stop_bench_server() {
    for pid in $extra_pids ${server:-}; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "${work:-}"
}

start_bench_server() {
    local bin="$1"
    work=$(mktemp -d)
    port=$((20000 + RANDOM % 10000))
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((20000 + RANDOM % 10000)); done
    "$bin/buyline" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --firehose none \
        --log warn >"$work/server.log" 2>&1 &
    server=$!
    trap stop_bench_server EXIT
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "the server did not become ready on port $port:"
    cat "$work/server.log"
    exit 1
}
