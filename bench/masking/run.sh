#!/usr/bin/env bash
# Build `masking`, generate the labelled dataset and score masking and
# pattern-only Presidio on it; writes RESULTS.md beside this script.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"

if [ ! -x "$here/.venv/bin/python" ]; then
    python3 -m venv "$here/.venv"
fi
"$here/.venv/bin/pip" install --quiet faker==40.63.0 presidio-analyzer==2.2.366

(cd "$root" && CARGO_TARGET_DIR="$target" cargo build --release -p masking --bin masking)

(cd "$root" && CARGO_TARGET_DIR="$target" cargo bench -p masking --bench throughput --no-run)

"$here/.venv/bin/python" "$here/generate.py" "$here/dataset.jsonl"
# Everything measured from here on runs on one CPU.
pin=()
if command -v taskset >/dev/null; then pin=(taskset -c 0); fi
(cd "$root" && CARGO_TARGET_DIR="$target" "${pin[@]}" cargo bench -p masking --bench throughput -- \
    --json "$here/short.jsonl" "$here/dataset.jsonl") > "$here/throughput.jsonl"
"${pin[@]}" "$here/.venv/bin/python" "$here/evaluate.py" "$here/dataset.jsonl" \
    --masking "$target/release/masking" --throughput "$here/throughput.jsonl" \
    --short "$here/short.jsonl" --out "$here/RESULTS.md"
