#!/usr/bin/env bash
# Fuzzes the REST API from its OpenAPI document with schemathesis (PyPI) and
# fails on any 5xx answer. Starts its own node on a free port in a temporary
# data directory, with an admin key; installs schemathesis into a virtual
# environment under target/ once.
#
#   scripts/fuzz-api.sh            # 100 examples per operation
#   EXAMPLES=20 scripts/fuzz-api.sh
set -euo pipefail

cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
examples="${EXAMPLES:-100}"
venv="$target/py-schemathesis"

cargo build -p agentcrm --quiet
if [ ! -x "$venv/bin/st" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==4.32.5"
fi

data="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
key="$("$target/debug/agentcrm" keys create --role admin --name fuzz --data-dir "$data/node" 2>/dev/null)"
"$target/debug/agentcrm" up --data-dir "$data/node" --listen "127.0.0.1:$port" >"$data/up.log" 2>&1 &
node=$!
cleanup() { kill "$node" 2>/dev/null || true; wait "$node" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.1
done

"$venv/bin/st" run "http://127.0.0.1:$port/api/v1/openapi.json" \
    --checks not_a_server_error \
    --header "Authorization: Bearer $key" \
    --max-examples "$examples" \
    --workers 2
# The node must still be serving after the run.
curl -fs "http://127.0.0.1:$port/healthz" >/dev/null
echo "fuzz-api: no 5xx, node still serving"
