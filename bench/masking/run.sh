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

"$here/.venv/bin/python" "$here/generate.py" "$here/dataset.jsonl"
"$here/.venv/bin/python" "$here/evaluate.py" "$here/dataset.jsonl" \
    --masking "$target/release/masking" --out "$here/RESULTS.md"
