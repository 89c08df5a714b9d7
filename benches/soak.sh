#!/usr/bin/env bash
# Soak: the forecaster under a steady, realistic mix for $DURATION, sampled every $EVERY seconds.
#   - two presage-agent processes: host metrics, a scrape of node-exporter, and a log file each
#     (a line every 50 ms, an ERROR shape now and then), over OTLP/gRPC;
#   - Prometheus scraping node-exporter and the forecaster's /metrics, remote_writing to it;
#   - presage-loadgen replaying history over OTLP/HTTP ($SERIES series, one-minute steps starting
#     $START_AGO ago, $RATE samples/s: the replay catches up with the wall clock after a while
#     and the series get fitted and refitted on the way).
# The forecaster runs with its defaults plus a durable store in a temporary directory.
# Reported per sample: RSS, open files, threads, series, and the store's checkpoint count; at the
# end the first and last after warm-up, the slope of RSS, and whether every sample the load
# generator had acknowledged is counted as stored.
#
# Usage:  benches/soak.sh            (builds the release binaries unless SKIP_BUILD=1)
# Knobs:  DURATION=1800 EVERY=30 WARMUP=300 SERIES=5000 RATE=2000 START_AGO=14d
#         BIN=target/release  BASE_PORT=19500 (uses +0..+5)  RESULTS=FILE
# Everything listens on 127.0.0.1; every process it starts is stopped on exit.

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${DURATION:-1800}
EVERY=${EVERY:-30}
WARMUP=${WARMUP:-300}
SERIES=${SERIES:-5000}
RATE=${RATE:-2000}
START_AGO=${START_AGO:-14d}
BIN=${BIN:-$ROOT/target/release}
BASE_PORT=${BASE_PORT:-19500}
RESULTS=${RESULTS:-}

HTTP=$((BASE_PORT + 0)); GRPC=$((BASE_PORT + 1)); OTLP_HTTP=$((BASE_PORT + 2))
PROM=$((BASE_PORT + 3)); NODE=$((BASE_PORT + 4)); AGENT_BASE=$((BASE_PORT + 5))

for tool in curl awk prometheus prometheus-node-exporter; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/presage-soak.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 1
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

if [[ -z "${SKIP_BUILD:-}" ]]; then
    log "building release binaries"
    cargo build --release -p presage-forecaster -p presage-agent -p presage-benches >&2
fi

wait_ready() { # url
    for _ in $(seq 600); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    log "timed out waiting for $1"; return 1
}
metric() { # name [label filter]: sum of matching samples on the forecaster's /metrics
    curl -fsS "http://127.0.0.1:$HTTP/metrics" | awk -v n="$1" -v f="${2:-}" '
        $1 !~ /^#/ { split($1, a, "{"); if (a[1] == n && index($1, f)) s += $2 }
        END { printf "%.0f\n", s }'
}

cat >"$TMP/presage.toml" <<EOF
[server]
http = "127.0.0.1:$HTTP"
otlp_grpc = "127.0.0.1:$GRPC"
otlp_http = "127.0.0.1:$OTLP_HTTP"
[storage]
dir = "$TMP/data"
EOF
"$BIN/presage" serve --config "$TMP/presage.toml" >"$TMP/presage.log" 2>&1 &
PRESAGE_PID=$!; PIDS+=("$PRESAGE_PID")
wait_ready "http://127.0.0.1:$HTTP/-/ready"

prometheus-node-exporter --web.listen-address="127.0.0.1:$NODE" >"$TMP/node.log" 2>&1 &
PIDS+=("$!")
cat >"$TMP/prometheus.yml" <<EOF
global: { scrape_interval: 15s }
scrape_configs:
  - job_name: node
    static_configs: [{ targets: ["127.0.0.1:$NODE"] }]
  - job_name: presage
    static_configs: [{ targets: ["127.0.0.1:$HTTP"] }]
remote_write:
  - url: http://127.0.0.1:$HTTP/api/v1/write
EOF
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom" \
    --web.listen-address="127.0.0.1:$PROM" >"$TMP/prometheus.log" 2>&1 &
PIDS+=("$!")

for a in 1 2; do
    mkdir -p "$TMP/agent$a"
    cat >"$TMP/agent$a.toml" <<EOF
[agent]
endpoint = "http://127.0.0.1:$GRPC"
interval = "15s"
state_dir = "$TMP/agent$a"
telemetry = "127.0.0.1:$((AGENT_BASE + a))"
[[scrape]]
url = "http://127.0.0.1:$NODE/metrics"
[[logs]]
paths = ["$TMP/app$a.log"]
EOF
    ( i=0; while true; do
        i=$((i + 1))
        if (( i % 2000 == 0 )); then
            echo "$(date -Is) ERROR payment $i failed: upstream reset by peer 10.0.$((i % 250)).1"
        else
            echo "$(date -Is) INFO request $i served in $((i % 97)) ms for user u$((i % 5000))"
        fi >>"$TMP/app$a.log"
        sleep 0.05
      done ) &
    PIDS+=("$!")
    OTEL_RESOURCE_ATTRIBUTES="host.name=soak-$a" "$BIN/presage-agent" --config "$TMP/agent$a.toml" \
        >"$TMP/agent$a.out" 2>&1 &
    PIDS+=("$!")
done

"$BIN/presage-loadgen" --target otlp-http --url "http://127.0.0.1:$OTLP_HTTP/v1/metrics" \
    --series "$SERIES" --batch 1000 --concurrency 2 --rate "$RATE" --step-ms 60000 \
    --start-ago "$START_AGO" --duration "${DURATION}s" --json >"$TMP/loadgen.json" 2>"$TMP/loadgen.log" &
LOADGEN_PID=$!; PIDS+=("$LOADGEN_PID")

printf '%8s %10s %6s %8s %8s %12s %6s\n' elapsed_s rss_kib fds threads series accepted ckpts | tee "$TMP/samples"
START=$(date +%s)
while kill -0 "$LOADGEN_PID" 2>/dev/null; do
    sleep "$EVERY"
    kill -0 "$PRESAGE_PID" 2>/dev/null || { log "the forecaster died"; tail -20 "$TMP/presage.log"; exit 1; }
    now=$(( $(date +%s) - START ))
    rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$PRESAGE_PID/status")
    thr=$(awk '$1 == "Threads:" { print $2 }' "/proc/$PRESAGE_PID/status")
    fds=$(ls "/proc/$PRESAGE_PID/fd" | wc -l)
    printf '%8d %10d %6d %8d %8d %12d %6d\n' "$now" "$rss" "$fds" "$thr" \
        "$(metric presage_series)" "$(metric presage_samples_accepted_total)" \
        "$(metric presage_store_checkpoints_total 'result="ok"')" | tee -a "$TMP/samples"
done
wait "$LOADGEN_PID" || true

acked=$(awk -F'"samples_accepted":' 'NF > 1 { split($2, a, ","); print a[1] }' "$TMP/loadgen.json")
stored=$(metric presage_samples_accepted_total 'protocol="otlp_http"')
summary=$(awk -v w="$WARMUP" -v acked="$acked" -v stored="$stored" '
    NR > 1 && $1 >= w { n++; x[n] = $1; y[n] = $2; f[n] = $3; t[n] = $4 }
    END {
        if (n < 2) { print "too few samples after warm-up"; exit }
        for (i = 1; i <= n; i++) { sx += x[i]; sy += y[i] }
        mx = sx / n; my = sy / n
        for (i = 1; i <= n; i++) { sxy += (x[i] - mx) * (y[i] - my); sxx += (x[i] - mx) ^ 2 }
        printf "after warm-up (%ds): RSS %d -> %d KiB (slope %.1f KiB/min), open files %d -> %d, threads %d -> %d\n",
            w, y[1], y[n], 60 * sxy / sxx, f[1], f[n], t[1], t[n]
        printf "load generator: %s samples acknowledged; forecaster counts %s stored over OTLP/HTTP (%s)\n",
            acked, stored, (stored + 0 >= acked + 0) ? "none lost" : "MISSING SAMPLES"
    }' "$TMP/samples")
echo "$summary"
if [[ -n $RESULTS ]]; then { cat "$TMP/samples"; echo "$summary"; } >"$RESULTS"; fi
