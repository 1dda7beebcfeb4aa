#!/usr/bin/env bash
# Minimises a target's scratch corpus (run_cpu_hours.sh's) merged with the committed one into
# fuzz/corpus/TARGET, without disturbing a fuzzer that is still running on the scratch corpus:
#
#   fuzz/merge_corpus.sh TARGET
#
# This is `cargo fuzz cmin ... -use_counters=0` (README.md, "The corpus") on copies: libFuzzer's
# `-merge=1` reads the committed corpus and a snapshot of the scratch one and writes, into an
# empty directory, one input per covered edge (`-use_counters=0`: not one per hit-count bucket),
# committed inputs first. The binary is the one run_cpu_hours.sh last built.
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 TARGET" >&2
    exit 2
fi
target=$1
fuzz_dir=$(cd "$(dirname "$0")" && pwd)
work=${FUZZWORK:-/work/fuzzwork}/$target
binary=$work/bin/$target
[ -x "$binary" ] || { echo "no $binary: run run_cpu_hours.sh first" >&2; exit 1; }
snapshot=$work/merge-scratch
merged=$work/merge-out
rm -rf "$snapshot" "$merged"
mkdir -p "$snapshot" "$merged"
# Not a glob (tens of thousands of files); a file the fuzzer deletes while this copies (it
# replaced it with a smaller one, copied too) is skipped.
cp -r "$work/corpus/." "$snapshot/" 2>/dev/null || true
nice -n 19 "$binary" -merge=1 -use_counters=0 -timeout=10 \
    "$merged" "$fuzz_dir/corpus/$target" "$snapshot" >"$work/merge.log" 2>&1
rm -rf "$fuzz_dir/corpus/$target"
mv "$merged" "$fuzz_dir/corpus/$target"
rm -rf "$snapshot"
echo "$target: $(find "$fuzz_dir/corpus/$target" -type f | wc -l) files," \
    "$(du -sb --apparent-size "$fuzz_dir/corpus/$target" | cut -f1) bytes in corpus/$target"
