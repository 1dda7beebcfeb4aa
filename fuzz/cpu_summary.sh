#!/usr/bin/env bash
# Sums fuzz/cpu_log/*.tsv (written by run_cpu_hours.sh): per target, rounds, CPU seconds and
# hours, executions (`-` in a log: a round whose count was not recorded; the first rounds of
# 2026-12-06 lost it to a parsing bug), the scratch corpus size after the last round, and rounds
# that crashed.
set -euo pipefail
fuzz_dir=$(cd "$(dirname "$0")" && pwd)
printf 'target\trounds\tcpu_seconds\tcpu_hours\texecs\trounds_without_execs\tcorpus_files\tcrash_rounds\n'
for log in "$fuzz_dir"/cpu_log/*.tsv; do
    awk -F'\t' -v target="$(basename "$log" .tsv)" '
        NR > 1 {
            rounds++; cpu += $2; files = $4
            if ($3 ~ /^[0-9]+$/) execs += $3; else unknown++
            if ($5 != "ok") crashes++
        }
        END {
            printf "%s\t%d\t%.0f\t%.2f\t%d\t%d\t%d\t%d\n", target, rounds, cpu, cpu / 3600,
                execs, unknown, files, crashes
        }
    ' "$log"
done
