#!/usr/bin/env bash
# Overload: how Presage behaves when remote_write is sent at FACTOR (10) times the rate it can
# sustain. Two runs, each against a fresh daemon:
#   1. sustainable  CONCURRENCY senders send as fast as the daemon accepts (--rate 0) for
#                   DURATION; the accepted samples per second is the sustainable rate.
#   2. flood        FLOOD_CONCURRENCY senders (more than limits.max_concurrent_ingest_requests)
#                   offer FACTOR x the sustainable rate for DURATION, while /-/healthy and
#                   /metrics are probed every PROBE_INTERVAL seconds.
# Reported: the sustainable rate; during the flood the offered and accepted rates, the share of
# requests shed (by the generator's count and by presage_ingest_shed_total), the p50/p99
# latency and failures of /-/healthy and /metrics, and the daemon's peak RSS (VmHWM) against
# limits.max_inflight_ingest_bytes and limits.memory_limit.
#
# Usage:  benches/flood.sh PATH/TO/presage [PATH/TO/presage-loadgen]
#   The load generator defaults to presage-loadgen beside the presage binary
#   (cargo build --release -p presage-forecaster -p presage-benches builds both).
# Knobs (environment):
#   DURATION=30s  FACTOR=10  SERIES=20000  BATCH=500  CONCURRENCY=4  FLOOD_CONCURRENCY=128
#   MAX_CONCURRENT=64 (limits.max_concurrent_ingest_requests)
#   MAX_INFLIGHT=256MiB (limits.max_inflight_ingest_bytes)  PROBE_INTERVAL=0.1
#   MEMORY_LIMIT=auto (limits.memory_limit: a size, "auto" or "none")
#   THREADS=2 (generator threads)  BASE_PORT=19480 (uses BASE_PORT+0..2)  RESULTS=FILE
# The flood's senders each own BATCH series, so its series count is FLOOD_CONCURRENCY x BATCH
# (64000 at the defaults, under the default limits.max_series).
# Everything listens on 127.0.0.1; every process this script starts is stopped on exit.

set -euo pipefail

PRESAGE=${1:?usage: benches/flood.sh PATH/TO/presage [PATH/TO/presage-loadgen]}
LOADGEN=${2:-$(dirname "$PRESAGE")/presage-loadgen}
DURATION=${DURATION:-30s}
FACTOR=${FACTOR:-10}
SERIES=${SERIES:-20000}
BATCH=${BATCH:-500}
CONCURRENCY=${CONCURRENCY:-4}
FLOOD_CONCURRENCY=${FLOOD_CONCURRENCY:-128}
MAX_CONCURRENT=${MAX_CONCURRENT:-64}
MAX_INFLIGHT=${MAX_INFLIGHT:-256MiB}
MEMORY_LIMIT=${MEMORY_LIMIT:-auto}
PROBE_INTERVAL=${PROBE_INTERVAL:-0.1}
THREADS=${THREADS:-2}
BASE_PORT=${BASE_PORT:-19480}
RESULTS=${RESULTS:-}

HTTP_PORT=$((BASE_PORT + 0))
GRPC_PORT=$((BASE_PORT + 1))
OTLP_HTTP_PORT=$((BASE_PORT + 2))
BASE=http://127.0.0.1:$HTTP_PORT

for tool in curl jq awk sort "$PRESAGE" "$LOADGEN"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

WORK=$(mktemp -d -t presage-flood.XXXXXX)
DAEMON_PID=
PROBE_PIDS=()
cleanup() {
    for pid in "${PROBE_PIDS[@]}" $DAEMON_PID; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# Starts a fresh daemon; sets DAEMON_PID.
start_daemon() {
    local name=$1
    rm -rf "$WORK/data"
    cat >"$WORK/presage.toml" <<EOF
[server]
http = "127.0.0.1:$HTTP_PORT"
otlp_grpc = "127.0.0.1:$GRPC_PORT"
otlp_http = "127.0.0.1:$OTLP_HTTP_PORT"

[storage]
dir = "$WORK/data"

[limits]
max_concurrent_ingest_requests = $MAX_CONCURRENT
max_inflight_ingest_bytes = "$MAX_INFLIGHT"
memory_limit = "$MEMORY_LIMIT"
EOF
    "$PRESAGE" serve --config "$WORK/presage.toml" >"$WORK/$name.log" 2>&1 &
    DAEMON_PID=$!
    for _ in $(seq 1 600); do
        if curl -sf -o /dev/null "$BASE/-/ready"; then
            return 0
        fi
        kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$WORK/$name.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "the daemon did not become ready" >&2
    exit 1
}

stop_daemon() {
    kill "$DAEMON_PID" 2>/dev/null || true
    wait "$DAEMON_PID" 2>/dev/null || true
    DAEMON_PID=
}

# Field of /proc/PID/status in MiB.
proc_mib() {
    awk -v f="$2:" '$1 == f { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

# Sum of a metric's samples on /metrics.
metric_sum() {
    curl -sf "$BASE/metrics" | awk -v m="$1" 'index($0, m) == 1 { s += $NF } END { printf "%d", s }'
}

# Probes PATH every PROBE_INTERVAL: one "code seconds" line per probe in FILE.
probe() {
    local path=$1 file=$2
    while true; do
        curl -s -o /dev/null --max-time 5 -w '%{http_code} %{time_total}\n' "$BASE$path" >>"$file" || true
        sleep "$PROBE_INTERVAL"
    done
}

# "p50_ms p99_ms probes failures" of a probe file.
probe_stats() {
    local file=$1
    local n failures
    n=$(wc -l <"$file")
    failures=$(awk '$1 != 200 { f++ } END { print f + 0 }' "$file")
    awk '{ print $2 * 1000 }' "$file" | sort -n | awk -v n="$n" -v failures="$failures" '
        { v[NR] = $1 }
        END {
            if (n == 0) { print "n/a n/a 0 0"; exit }
            i50 = int(n * 0.50 + 0.999); if (i50 < 1) i50 = 1
            i99 = int(n * 0.99 + 0.999); if (i99 < 1) i99 = 1
            printf "%.1f %.1f %d %d\n", v[i50], v[i99], n, failures
        }'
}

run_loadgen() {
    local out=$1
    shift
    "$LOADGEN" --target remote-write --url "$BASE/api/v1/write" --batch "$BATCH" \
        --duration "$DURATION" --threads "$THREADS" --step-ms 15000 --start-ago 6h --timeout 30s \
        --json "$@" >"$out" 2>"$out.err" || true
    if ! jq -e . "$out" >/dev/null 2>&1; then
        echo "the load generator failed:" >&2
        cat "$out.err" >&2
        exit 1
    fi
}

echo "== sustainable rate: $CONCURRENCY senders, $SERIES series, batch $BATCH, $DURATION" >&2
start_daemon sustainable
run_loadgen "$WORK/sustainable.json" --series "$SERIES" --concurrency "$CONCURRENCY" --rate 0
SUSTAINABLE=$(jq -r '.accepted_per_second | floor' "$WORK/sustainable.json")
stop_daemon
if [ "$SUSTAINABLE" -le 0 ]; then
    echo "nothing was accepted in the sustainable run:" >&2
    jq -r '.first_error' "$WORK/sustainable.json" >&2
    exit 1
fi
OFFERED=$((SUSTAINABLE * FACTOR))
FLOOD_SERIES=$((FLOOD_CONCURRENCY * BATCH))

echo "== flood: ${FACTOR}x = $OFFERED samples/s, $FLOOD_CONCURRENCY senders, $FLOOD_SERIES series, $DURATION" >&2
start_daemon flood
RSS_BEFORE=$(proc_mib "$DAEMON_PID" VmRSS)
probe /-/healthy "$WORK/healthy.txt" &
PROBE_PIDS+=($!)
probe /metrics "$WORK/metrics.txt" &
PROBE_PIDS+=($!)
run_loadgen "$WORK/flood.json" --series "$FLOOD_SERIES" --concurrency "$FLOOD_CONCURRENCY" \
    --rate "$OFFERED"
for pid in "${PROBE_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
done
PROBE_PIDS=()
PEAK_RSS=$(proc_mib "$DAEMON_PID" VmHWM)
RSS_AFTER=$(proc_mib "$DAEMON_PID" VmRSS)
SHED_COUNTED=$(metric_sum presage_ingest_shed_total)
SHED_MEMORY=$(curl -sf "$BASE/metrics" | awk '/^presage_ingest_shed_total/ && /reason="memory"/ { s += $NF } END { printf "%d", s }')
kill -0 "$DAEMON_PID" 2>/dev/null || { echo "the daemon died during the flood" >&2; exit 1; }
read -r H50 H99 HN HF < <(probe_stats "$WORK/healthy.txt")
read -r M50 M99 MN MF < <(probe_stats "$WORK/metrics.txt")
stop_daemon

OK=$(jq -r '.requests_ok' "$WORK/flood.json")
FAILED=$(jq -r '.requests_failed' "$WORK/flood.json")
SHED_SHARE=$(awk -v ok="$OK" -v f="$FAILED" 'BEGIN { t = ok + f; printf "%.1f", t ? 100 * f / t : 0 }')
SENT_RATE=$(jq -r '.sent_per_second | floor' "$WORK/flood.json")
ACCEPTED_RATE=$(jq -r '.accepted_per_second | floor' "$WORK/flood.json")
INGEST_P99=$(jq -r '.latency_p99_ms' "$WORK/flood.json")
FIRST_ERROR=$(jq -r '.first_error // "none"' "$WORK/flood.json")

REPORT=$(cat <<EOF
| measure | value |
| --- | --- |
| sustainable remote_write rate ($CONCURRENCY senders, batch $BATCH) | $SUSTAINABLE samples/s |
| flood: offered (${FACTOR}x) / sent / accepted | $OFFERED / $SENT_RATE / $ACCEPTED_RATE samples/s |
| flood: requests ok / shed or failed (share) | $OK / $FAILED ($SHED_SHARE %) |
| flood: presage_ingest_shed_total (of which reason="memory") | $SHED_COUNTED ($SHED_MEMORY) |
| flood: ingest request p99 (generator) | $INGEST_P99 ms |
| /-/healthy during the flood: p50 / p99, failures | $H50 / $H99 ms, $HF of $HN |
| /metrics during the flood: p50 / p99, failures | $M50 / $M99 ms, $MF of $MN |
| RSS before / after the flood, peak (VmHWM) | $RSS_BEFORE / $RSS_AFTER / $PEAK_RSS MiB |
| limits | max_concurrent_ingest_requests = $MAX_CONCURRENT, max_inflight_ingest_bytes = $MAX_INFLIGHT, memory_limit = $MEMORY_LIMIT |
| first refusal seen by the generator | $FIRST_ERROR |
EOF
)
echo "$REPORT"
if [ -n "$RESULTS" ]; then
    echo "$REPORT" >"$RESULTS"
fi
