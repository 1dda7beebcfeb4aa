#!/usr/bin/env bash
# Seeds fuzz/corpus/decode/ with real objects from ../shared/data, one object per file, named
# by content hash as cargo-fuzz names its own finds. Run once before the first `cargo fuzz run`;
# afterwards the committed (minimised) corpus is the seed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
data=${1:-../../shared/data}
out=corpus/decode
mkdir -p "$out"
# Every Nth line of each sample keeps the seed small while spanning the file.
seed() { # file every
    awk -v every="$2" 'NF && (NR - 1) % every == 0' "$1" | while IFS= read -r line; do
        name=$(printf '%s' "$line" | sha1sum | cut -d' ' -f1)
        printf '%s' "$line" >"$out/$name"
    done
}
seed "$data/twitter_v1_statuses.jsonl" 6
seed "$data/twitter_v1_stream_notices.jsonl" 1
seed "$data/jetstream_events.jsonl" 1
seed "$data/twitter_legacy_statuses_no_id_str.jsonl" 5
