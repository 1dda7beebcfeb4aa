#!/usr/bin/env bash
# Three buyline nodes on one machine, sharing one NATS JetStream bus and one Redis (README
# "Several nodes").
#
# Starts a nats-server with JetStream (its store in a temporary dir) and a redis-server with the
# settings buyline requires (append-only file fsynced on every write, no eviction), then three
# nodes with `--bus` and `--store` on them (every node reads the whole firehose from the bus, so
# a tweet ingested on one arrives on all with the same seq), one `--secret-file` between them (a
# token from any node works on all) and their own data dirs;
# prints their URLs and runs until Ctrl-C (or SIGTERM), when it stops every process it started,
# by pid, and removes the temporary dir.
#
#   bash examples/cluster.sh
#
# Settings (environment variables):
#   BUYLINE        the buyline binary (default: target/release/buyline, then target/debug/buyline,
#                  then `buyline` on PATH)
#   NATS_SERVER    the nats-server binary, 2.9 or newer (default: `nats-server` on PATH)
#   NATS_PORT      NATS's port (default 4222)
#   REDIS_SERVER   the redis-server binary (default: `redis-server` on PATH)
#   REDIS_PORT     Redis's port (default 6379)
#   BUYLINE_PORTS  the nodes' ports, space-separated (default "8080 8081 8082")
#   BUYLINE_ARGS   more flags for every node, e.g. "--firehose none --catalog catalog.toml"
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${BUYLINE:-}" ]; then
    for candidate in "$repo/target/release/buyline" "$repo/target/debug/buyline"; do
        if [ -x "$candidate" ]; then
            BUYLINE="$candidate"
            break
        fi
    done
fi
BUYLINE="${BUYLINE:-buyline}"
NATS_SERVER="${NATS_SERVER:-nats-server}"
NATS_PORT="${NATS_PORT:-4222}"
REDIS_SERVER="${REDIS_SERVER:-redis-server}"
REDIS_PORT="${REDIS_PORT:-6379}"
read -r -a ports <<<"${BUYLINE_PORTS:-8080 8081 8082}"
read -r -a extra_args <<<"${BUYLINE_ARGS:-}"

for program in "$BUYLINE" "$NATS_SERVER" "$REDIS_SERVER"; do
    if ! command -v "$program" >/dev/null 2>&1; then
        echo "cluster.sh: $program not found (build with cargo build --release; apt-get install nats-server redis-server)" >&2
        exit 1
    fi
done

work="$(mktemp -d "${TMPDIR:-/tmp}/buyline-cluster.XXXXXX")"
pids=()

# Stops what this script started, newest first, by pid: SIGTERM, then SIGKILL after 10 s.
stop_all() {
    local pid waited
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        pid="${pids[i]}"
        kill -TERM "$pid" 2>/dev/null || continue
        waited=0
        while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 100 ]; do
            sleep 0.1
            waited=$((waited + 1))
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap stop_all EXIT
trap 'echo "cluster.sh: stopping"; exit 130' INT
trap 'echo "cluster.sh: stopping"; exit 143' TERM

# Whether whatever listens on 127.0.0.1:$1 answers `$2` (a request line) with a line holding $3.
answers() {
    local reply
    # A compound command's failed redirection (nothing listening yet) is an ordinary failure.
    reply="$({
        printf '%s\r\n\r\n' "$2" >&3
        IFS= read -r -t 2 line <&3 && printf '%s' "$line"
    } 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$1")" || return 1
    [[ "$reply" == *"$3"* ]]
}

# Waits up to 30 s for port $1 to answer (see `answers`); gives up, showing the end of its log
# $5, if process $4 died.
wait_for() {
    for _ in $(seq 300); do
        if answers "$1" "$2" "$3"; then
            return 0
        fi
        if ! kill -0 "$4" 2>/dev/null; then
            echo "cluster.sh: process $4 exited at start-up; the end of its log:" >&2
            sed -n "/^Stack backtrace/q;p" "$5" | tail -n 20 >&2
            return 1
        fi
        sleep 0.1
    done
    echo "cluster.sh: nothing answered on 127.0.0.1:$1 within 30 s" >&2
    return 1
}

mkdir -p "$work/nats" "$work/redis"
"$NATS_SERVER" -js -sd "$work/nats" -a 127.0.0.1 -p "$NATS_PORT" >"$work/nats.log" 2>&1 &
pids+=("$!")
# A NATS server greets every connection with an INFO line.
wait_for "$NATS_PORT" "PING" "INFO" "${pids[0]}" "$work/nats.log"
"$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$work/redis" \
    --appendonly yes --appendfsync always --maxmemory-policy noeviction --save "" \
    >"$work/redis.log" 2>&1 &
pids+=("$!")
wait_for "$REDIS_PORT" "PING" "+PONG" "${pids[1]}" "$work/redis.log"

# Every node signs and checks tokens with this secret.
(umask 077 && head -c 48 /dev/urandom >"$work/secret.key")
for port in "${ports[@]}"; do
    mkdir -p "$work/node-$port"
    "$BUYLINE" --bus "nats://127.0.0.1:$NATS_PORT" --store "redis://127.0.0.1:$REDIS_PORT" \
        --secret-file "$work/secret.key" \
        --listen "127.0.0.1:$port" --data-dir "$work/node-$port" "${extra_args[@]}" \
        >"$work/node-$port.log" 2>&1 &
    pids+=("$!")
done
for i in "${!ports[@]}"; do
    wait_for "${ports[i]}" "GET /readyz HTTP/1.0" " 200 " "${pids[i + 2]}" "$work/node-${ports[i]}.log"
done

echo "nats: nats://127.0.0.1:$NATS_PORT (pid ${pids[0]}, JetStream store $work/nats)"
echo "redis: redis://127.0.0.1:$REDIS_PORT (pid ${pids[1]}, dir $work/redis)"
for i in "${!ports[@]}"; do
    echo "node $((i + 1)): http://127.0.0.1:${ports[i]} (pid ${pids[i + 2]}, log $work/node-${ports[i]}.log)"
done
echo "secret: $work/secret.key (tokens from any node work on all)"
echo "cluster ready; Ctrl-C stops it"

# Runs until a signal, or until a process exits on its own (then the others are stopped too).
set +e
wait -n "${pids[@]}"
status=$?
echo "cluster.sh: a process exited (status $status); stopping the others" >&2
exit 1
