#!/usr/bin/env bash
# Signed webhook ingest: AgentCRM's gateway (`agentcrm up`, Standard Webhooks
# verification, 202 after the intake's group commit with fdatasync) next to
# the seed's FastAPI handler (uvicorn, one worker), driven by the same wrk run.
# The seed runs twice: on uvicorn's fast loop and parser (uvloop, httptools:
# what `pip install "fastapi[standard]"` installs), the baseline the ratio is
# taken against, and on its pure-Python ones (asyncio, h11: plain
# `pip install uvicorn`).
#
#   bench/gateway/run.sh            # DURATION=10s CONNECTIONS=64 by default
set -euo pipefail
cd "$(dirname "$0")/../.."
here=bench/gateway
target="${CARGO_TARGET_DIR:-target}"
duration="${DURATION:-10s}"
connections="${CONNECTIONS:-64}"
count="${REQUESTS_COUNT:-1000000}"
command -v wrk >/dev/null || { apt-get install -y -qq wrk || { apt-get update -qq && apt-get install -y -qq wrk; }; }

cargo build --release -p agentcrm --quiet
venv="$(cd "$target" && pwd)/py-bench-standard"
if [ ! -x "$venv/bin/uvicorn" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check fastapi==0.163.2 "uvicorn[standard]==0.54.0"
fi

work="$(mktemp -d)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
gw_port="$(free_port)"; py_port="$(free_port)"; pure_port="$(free_port)"
secret="$("$target/release/agentcrm" sources add default --data-dir "$work/node" 2>/dev/null)"
admin="$("$target/release/agentcrm" keys create --role admin --name bench --data-dir "$work/node" 2>/dev/null)"
RUST_LOG=warn "$target/release/agentcrm" up --data-dir "$work/node" --listen "127.0.0.1:$gw_port" >"$work/up.log" 2>&1 &
gw=$!
(cd "$here" && exec "$venv/bin/uvicorn" seed_app:app --port "$py_port" --workers 1 --log-level warning) >"$work/uvicorn.log" 2>&1 &
py=$!
(cd "$here" && exec "$venv/bin/uvicorn" seed_app:app --port "$pure_port" --workers 1 --loop asyncio --http h11 --log-level warning) >"$work/uvicorn-pure.log" 2>&1 &
pure_pid=$!
cleanup() { kill "$gw" "$py" "$pure_pid" 2>/dev/null || true; wait "$gw" "$py" "$pure_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for port in "$gw_port" "$py_port" "$pure_port"; do
    for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/docs" && break; sleep 0.1; done
done

# Unique, freshly signed deliveries (the signature window is 5 minutes), one
# file per wrk thread. Each file is written out to disk (`sync`) before the
# run that reads it: otherwise the kernel writes it back about 30 s later,
# during a measured run, and the node's `fdatasync`s queue behind hundreds of
# megabytes of wrk's input on the same disk.
python3 "$here/sign_requests.py" "$secret" "$count" "$work/requests" 2 peak
sync
echo "== seed FastAPI handler (uvicorn with uvloop and httptools, 1 worker), $connections connections, $duration"
REQUESTS="$work/requests" wrk -t2 -c"$connections" -d"$duration" --latency -s "$here/signed.lua" "http://127.0.0.1:$py_port" | tee "$work/seed.txt"
echo "== seed FastAPI handler (uvicorn on asyncio and h11, 1 worker), $connections connections, $duration"
REQUESTS="$work/requests" wrk -t2 -c"$connections" -d"$duration" --latency -s "$here/signed.lua" "http://127.0.0.1:$pure_port" | tee "$work/seed-pure.txt"
echo "== agentcrm up: signed, durable 202, $connections connections, $duration"
REQUESTS="$work/requests" wrk -t2 -c"$connections" -d"$duration" --latency -s "$here/signed.lua" "http://127.0.0.1:$gw_port" | tee "$work/wrk.txt"

# Does the masking agent keep up? Every accepted webhook becomes one masked
# event in the log; the customer 360 checkpoint is the log position it folded.
accepted="$(awk '/requests in/ {print $1}' "$work/wrk.txt")"
# wrk starts over at the first delivery once a thread has sent all of its
# own: a repeat is only a deduplication, so a run that got there measured the
# wrong thing.
if [ "$accepted" -gt "$count" ]; then
    echo "wrk sent $accepted requests but only $count deliveries were signed: run again with REQUESTS_COUNT above $accepted" >&2
    exit 1
fi
# Waits until the 360 fold has reached log position $1; prints how long.
drain() {
    local ended folded
    ended="$(date +%s%N)"
    while :; do
        folded="$(curl -fs -H "Authorization: Bearer $admin" "http://127.0.0.1:$gw_port/api/v1/read-models" \
            | python3 -c 'import json,sys; print(max(m["checkpoint"] for m in json.load(sys.stdin)))')"
        [ "$folded" -ge "$1" ] && break
        [ $(( ($(date +%s%N) - ended) / 1000000 )) -gt 120000 ] && { echo "masking did not drain within 120 s ($folded of $1)" >&2; break; }
        sleep 0.1
    done
    echo $(( ($(date +%s%N) - ended) / 1000000 ))
}
echo "== masking backlog: $accepted accepted webhooks all masked and folded $(drain "$accepted") ms after the load ended"

# Latency at half the peak: each connection paces its requests (signed.lua's
# delay), with deliveries not sent before. A paced connection also waits for
# each answer, and wrk's pauses run a little long, so each connection's cycle
# is its pause plus a time the pause does not control. Each paced run measures
# that time and sets the next run's pause to what is left of the cycle that
# half the peak needs (once one pacing held too little and another too much,
# the next lies halfway between them), until a run holds within 3 % of half
# the peak (at most six runs, each as long as the peak's; the closest one is
# reported). Short calibration runs were tried first, but a 3 s run and a
# 10 s run at one pacing held rates up to 27 % apart. Before each run the
# agents mask what was sent before.
peak="$(awk '/Requests\/sec/ {printf "%d", $2}' "$work/wrk.txt")"
half=$(( peak / 2 ))
seconds="$(python3 -c "
d = '$duration'
units = {'s': 1, 'm': 60, 'h': 3600}
print(int(float(d[:-1]) * units[d[-1]]) if d[-1] in units else int(d))")"
# Deliveries signed for each paced run: 1.5 times half the peak for the run
# and two seconds more (a paced run may hold more than it aims at).
paced_count=$(( half * (seconds + 2) * 3 / 2 ))
rate=$half
best_miss=$(( half * 100 ))
best=0
below=0
above=0
for attempt in 1 2 3 4 5 6; do
    echo "   paced run $attempt: backlog masked and folded in $(drain "$accepted") ms"
    python3 "$here/sign_requests.py" "$secret" "$paced_count" "$work/paced$attempt" 2 "paced$attempt"
    sync
    RATE="$rate" CONNECTIONS="$connections" REQUESTS="$work/paced$attempt" \
        wrk -t2 -c"$connections" -d"$duration" --latency -s "$here/signed.lua" "http://127.0.0.1:$gw_port" >"$work/paced$attempt.txt"
    held="$(awk '/Requests\/sec/ {printf "%d", $2}' "$work/paced$attempt.txt")"
    sent="$(awk '/requests in/ {print $1}' "$work/paced$attempt.txt")"
    [ "$sent" -gt "$paced_count" ] && { echo "paced run $attempt sent more requests than were signed" >&2; exit 1; }
    accepted=$(( accepted + sent ))
    echo "   paced run $attempt: pacing for $rate requests/s held $held, p99 $(awk '$1 == "99%" {print $2}' "$work/paced$attempt.txt")"
    miss=$(( held > half ? held - half : half - held ))
    [ "$miss" -lt "$best_miss" ] && { best_miss=$miss; best=$attempt; }
    [ $(( miss * 100 )) -le $(( half * 3 )) ] && break
    # Between a pacing that held too little and one that held too much, the
    # next is halfway; otherwise cycle = pause + other, where
    # other = connections/held - connections/rate.
    if [ "$held" -lt "$half" ]; then below=$(( rate > below ? rate : below )); else above=$(( above == 0 || rate < above ? rate : above )); fi
    rate="$(python3 -c "
c, rate, held, half, below, above = $connections, $rate, max($held, 1), $half, $below, $above
if below and above:
    print((below + above) // 2)
else:
    other = c / held - c / rate
    pause = max(c / half - other, c / half / 20)
    print(round(c / pause))")"
done
echo "== agentcrm up at half the peak ($half requests/s), $connections connections, $duration: paced run $best, the closest to it"
cat "$work/paced$best.txt"
seed="$(awk '/Requests\/sec/ {printf "%d", $2}' "$work/seed.txt")"
pure="$(awk '/Requests\/sec/ {printf "%d", $2}' "$work/seed-pure.txt")"
echo "== peak: agentcrm $peak requests/s, seed $seed requests/s: $(python3 -c "print(f'{$peak / max($seed, 1):.1f}')")x (seed on asyncio and h11: $pure requests/s, $(python3 -c "print(f'{$peak / max($pure, 1):.1f}')")x)"
