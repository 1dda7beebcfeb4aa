#!/usr/bin/env bash
# Runs one fuzz target until it has had SECONDS of CPU time, counted across runs.
#
#   fuzz/run_cpu_hours.sh TARGET SECONDS
#
# libFuzzer runs at nice 19 (idle CPU only) in rounds of at most 600 s of wall time. Each
# round's CPU seconds (user + sys of the fuzzer process, from /usr/bin/time), executions and
# scratch corpus size are appended to fuzz/cpu_log/TARGET.tsv; the CPU column of that log is
# what counts, so a later run resumes where the log stops. Wall time is not the measure: on a
# busy machine a 600 s round may get far less than 600 s of CPU.
#
# The scratch corpus is $FUZZWORK/TARGET/corpus (default /work/fuzzwork), outside the
# repository, seeded from the committed fuzz/corpus/TARGET; the committed corpus is passed
# second, so libFuzzer only reads it. Before every round the target is rebuilt from the
# working tree (a no-op when nothing changed), so a fix lands in the next round; a build that
# fails keeps the previous binary. A crash ends its round; the artifact is in
# fuzz/artifacts/TARGET/ and the log's `result` column names it. The next round starts after
# a pause, so a crash that reproduces at once does not spin.
set -euo pipefail

if [ $# -ne 2 ] || ! [[ $2 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 TARGET SECONDS" >&2
    exit 2
fi
target=$1
goal=$2
fuzz_dir=$(cd "$(dirname "$0")" && pwd)
work=${FUZZWORK:-/work/fuzzwork}/$target
log=$fuzz_dir/cpu_log/$target.tsv
round_wall=600
crash_pause=300

mkdir -p "$work/corpus" "$work/bin" "$fuzz_dir/cpu_log" "$fuzz_dir/artifacts/$target"
if [ ! -f "$log" ]; then
    printf 'finished_utc\tcpu_seconds\texecs\tcorpus_files\tresult\n' >"$log"
fi
# Seed (or top up) the scratch corpus: files already there are kept.
cp -rn "$fuzz_dir/corpus/$target/." "$work/corpus/"

# CPU seconds the log holds so far, as an integer.
spent() {
    awk -F'\t' 'NR > 1 { sum += $2 } END { printf "%d\n", sum }' "$log"
}

build() {
    (cd "$fuzz_dir" && RUSTC_BOOTSTRAP=1 nice -n 19 cargo fuzz build -O "$target") \
        >"$work/build.log" 2>&1 || return 1
    # A copy, so a rebuild never writes over the binary a round is running.
    cp "$fuzz_dir/target/x86_64-unknown-linux-gnu/release/$target" "$work/bin/$target.new"
    mv "$work/bin/$target.new" "$work/bin/$target"
}

while [ "$(spent)" -lt "$goal" ]; do
    if ! build; then
        if [ ! -x "$work/bin/$target" ]; then
            echo "building $target failed; see $work/build.log" >&2
            exit 1
        fi
        echo "$(date -u +%FT%TZ) build failed, fuzzing the previous binary" >&2
    fi
    rc=0
    nice -n 19 /usr/bin/time -f '%U %S' -o "$work/time.txt" \
        "$work/bin/$target" -max_total_time=$round_wall -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$fuzz_dir/artifacts/$target/" \
        "$work/corpus" "$fuzz_dir/corpus/$target" >"$work/round.log" 2>&1 || rc=$?
    # /usr/bin/time writes "Command exited with non-zero status N" first when it fails.
    cpu=$(awk 'END { printf "%.2f", $1 + $2 }' "$work/time.txt")
    execs=$(awk '/^stat::number_of_executed_units:/ { n = $NF } END { print n + 0 }' \
        "$work/round.log")
    files=$(find "$work/corpus" -type f | wc -l)
    result=ok
    if [ "$rc" -ne 0 ]; then
        artifact=$(sed -n 's/.*Test unit written to \([^ ]*\).*/\1/p' "$work/round.log" | tail -1)
        result="exit_$rc:${artifact##*/}"
        cp "$work/round.log" "$work/crash-round-$(date -u +%Y%m%dT%H%M%S).log"
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$cpu" "$execs" "$files" "$result" \
        >>"$log"
    if [ "$result" != ok ]; then
        sleep "$crash_pause"
    fi
done
echo "$target: $(spent) CPU seconds logged (goal $goal)"
