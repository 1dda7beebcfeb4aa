#!/usr/bin/env bash
# Measures buyline's CPU use while its synthetic firehose runs at RATE tweets/s (0: unpaced) with
# no subscribers. Run from the repository root after `cargo build --release`:
#   bash benches/ingest_cpu.sh 100000
set -euo pipefail
RATE=${1:-100000}
DIR=$(mktemp -d)
./target/release/buyline --listen 127.0.0.1:18181 --data-dir "$DIR" --rate "$RATE" --log warn &
PID=$!
trap 'kill $PID 2>/dev/null; rm -rf "$DIR"' EXIT
sleep 3
count() { curl -s 127.0.0.1:18181/metrics | awk '/^buyline_tweets_ingested_total/ {s+=$2} END {print s+0}'; }
cpu() { awk '{print $14+$15}' /proc/$PID/stat; }
t0=$(cpu); n0=$(count); s0=$(date +%s.%N)
sleep 10
t1=$(cpu); n1=$(count); s1=$(date +%s.%N)
TCK=$(getconf CLK_TCK)
python3 -c "
wall=$s1-$s0; cpu=($t1-$t0)/$TCK; n=$n1-$n0
print(f'rate asked {$RATE}/s: ingested {n/wall:,.0f} tweets/s over {wall:.1f} s; server CPU {cpu/wall:.2f} cores ({cpu/n*1e6:.2f} us CPU per tweet)')
"
