#!/usr/bin/env bash
# Ingest throughput and memory: Presage vs Prometheus' remote_write receiver, same generator,
# same machine, same run. For each series count, each target gets a fresh server, the generator
# sends as fast as the server accepts (--rate 0) for $DURATION, and the server's own counters
# give the accepted rate:
#   Presage     presage_samples_accepted_total (all protocols; one per run)
#   Prometheus  prometheus_tsdb_head_samples_appended_total
# The rate is measured server-side between the end of the warm-up ($WARMUP s, which covers
# creating the series) and the end of the run. RSS (VmRSS, VmHWM) is read from /proc right after
# the run; Presage's store accounting (presage_store_memory_bytes{part}) after its next
# maintenance pass.
#
# Usage:  benches/ingest-vs-prometheus.sh
# Knobs (environment):
#   SERIES="10000 100000"  DURATION=60s  WARMUP=10  BATCH=2000  CONCURRENCY=4  THREADS=2
#   STEP_MS=15000  START_AGO=72h
#   TARGETS="prometheus presage-rw presage-otlp-grpc presage-otlp-http"
#   PROMETHEUS=/usr/bin/prometheus  SKIP_BUILD=1 (use the existing release build)
#   PRESAGE=target/release/presage  LOADGEN=target/release/presage-loadgen
#   PRESAGE_STORAGE='fsync = "interval"' (extra [storage] lines; the default store is durable
#     with fsync = "always")
#   REPEAT=1 (runs per series count and target; each run's ratio is against Prometheus' best)
#   IDLE_WAIT=300 (seconds to wait for other load on the machine to stop before each run)
#   NICE=0 (e.g. -10 as root: servers and generator, and this session's autogroup, get priority
#     over other work on a shared machine; both servers get the same treatment)
#   BASE_PORT=19400 (uses BASE_PORT+0..3)  RESULTS=FILE (also write the table there)
#   PRESAGE_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 (diagnostic: run Presage with
#     another malloc via LD_PRELOAD)
# Everything listens on 127.0.0.1; every process this script starts is stopped on exit.

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

SERIES=${SERIES:-"10000 100000"}
DURATION=${DURATION:-60s}
WARMUP=${WARMUP:-10}
BATCH=${BATCH:-2000}
CONCURRENCY=${CONCURRENCY:-4}
THREADS=${THREADS:-2}
STEP_MS=${STEP_MS:-15000}
START_AGO=${START_AGO:-72h}
TARGETS=${TARGETS:-"prometheus presage-rw presage-otlp-grpc presage-otlp-http"}
PROMETHEUS=${PROMETHEUS:-/usr/bin/prometheus}
BASE_PORT=${BASE_PORT:-19400}
RESULTS=${RESULTS:-}
REPEAT=${REPEAT:-1}
IDLE_WAIT=${IDLE_WAIT:-300}
NICE=${NICE:-0}

HTTP_PORT=$((BASE_PORT + 0))
GRPC_PORT=$((BASE_PORT + 1))
OTLP_HTTP_PORT=$((BASE_PORT + 2))
PROM_PORT=$((BASE_PORT + 3))

PRESAGE=${PRESAGE:-$ROOT/target/release/presage}
LOADGEN=${LOADGEN:-$ROOT/target/release/presage-loadgen}
# Extra [storage] lines for Presage, e.g. 'durable = false' or 'fsync = "interval"'.
PRESAGE_STORAGE=${PRESAGE_STORAGE:-}
CLK_TCK=$(getconf CLK_TCK)

for tool in curl jq awk "$PROMETHEUS"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/presage-ingest-bench.XXXXXX")
PIDS=()

AUTOGROUP_NICE_BEFORE=""

cleanup() {
    if [[ -n $AUTOGROUP_NICE_BEFORE ]]; then
        echo "$AUTOGROUP_NICE_BEFORE" >"/proc/$$/autogroup" 2>/dev/null || true
    fi
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

if [[ -z "${SKIP_BUILD:-}" ]]; then
    log "building release binaries"
    cargo build --release -p presage-forecaster -p presage-benches >&2
fi

# With autogroup scheduling (the default on most kernels) nice values only order processes of one
# session; other sessions' work is held back only by the session's own autogroup nice. Set both.
if [[ $NICE != 0 && -w /proc/$$/autogroup ]]; then
    AUTOGROUP_NICE_BEFORE=$(awk '{ print $NF }' "/proc/$$/autogroup")
    echo "$NICE" >"/proc/$$/autogroup" || AUTOGROUP_NICE_BEFORE=""
fi

# --- helpers -------------------------------------------------------------------------------

stop() { # pid
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}

forget() { # pid: no longer ours to stop
    local kept=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || kept+=("$p"); done
    PIDS=("${kept[@]}")
}

wait_ready() { # url pid
    for _ in $(seq 300); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || { log "server exited before it was ready"; return 1; }
        sleep 0.1
    done
    log "timed out waiting for $1"
    return 1
}

status_kib() { # pid field (VmRSS, VmHWM)
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

cpu_ticks() { # pid: utime + stime
    sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

metric() { # url name [label filter]: sum of the matching samples
    curl -fsS "$1" | awk -v n="$2" -v f="${3:-}" '
        index($0, n) == 1 && (substr($0, length(n) + 1, 1) == "{" || substr($0, length(n) + 1, 1) == " ") \
            && (f == "" || index($0, f) > 0) { s += $NF }
        END { printf "%.0f\n", s }'
}

now() { date +%s.%N; }

machine_busy_ticks() { # all CPUs: user + nice + system + irq + softirq + steal
    awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

# Other work on the machine (e.g. someone's cargo build) skews a run: wait until the machine
# is idle (under 10% of one core busy over 2 s), for at most $IDLE_WAIT seconds.
wait_idle() {
    local deadline=$((SECONDS + IDLE_WAIT)) b1 b2
    while ((SECONDS < deadline)); do
        b1=$(machine_busy_ticks); sleep 2; b2=$(machine_busy_ticks)
        (((b2 - b1) * 100 < CLK_TCK * 2 * 10)) && return 0
    done
    log "machine still busy after ${IDLE_WAIT}s; measuring anyway (see the 'other CPU' column)"
}

start_presage() { # data dir
    cat >"$TMP/presage.toml" <<EOF
[server]
http = "127.0.0.1:$HTTP_PORT"
otlp_grpc = "127.0.0.1:$GRPC_PORT"
otlp_http = "127.0.0.1:$OTLP_HTTP_PORT"

[storage]
dir = "$1"
$PRESAGE_STORAGE

[limits]
max_series = 1000000
EOF
    nice -n "$NICE" env ${PRESAGE_PRELOAD:+LD_PRELOAD="$PRESAGE_PRELOAD"} \
        "$PRESAGE" serve --config "$TMP/presage.toml" --log warn >"$TMP/presage.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_ready "http://127.0.0.1:$HTTP_PORT/-/ready" "$SERVER_PID"
    METRICS_URL="http://127.0.0.1:$HTTP_PORT/metrics"
}

start_prometheus() { # data dir
    cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 15s
scrape_configs: []
EOF
    nice -n "$NICE" "$PROMETHEUS" --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$1" \
        --web.listen-address="127.0.0.1:$PROM_PORT" --web.enable-remote-write-receiver \
        --log.level=warn >"$TMP/prometheus.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_ready "http://127.0.0.1:$PROM_PORT/-/ready" "$SERVER_PID"
    METRICS_URL="http://127.0.0.1:$PROM_PORT/metrics"
}

# --- one run -------------------------------------------------------------------------------

ROWS=$TMP/rows.tsv
: >"$ROWS"

run_one() { # series target
    local series=$1 target=$2 data=$TMP/data-$2-$1 gen_target url counter
    rm -rf "$data"
    case $target in
        prometheus)
            start_prometheus "$data"
            gen_target=remote-write url="http://127.0.0.1:$PROM_PORT/api/v1/write"
            counter=prometheus_tsdb_head_samples_appended_total ;;
        presage-rw)
            start_presage "$data"
            gen_target=remote-write url="http://127.0.0.1:$HTTP_PORT/api/v1/write"
            counter=presage_samples_accepted_total ;;
        presage-otlp-grpc)
            start_presage "$data"
            gen_target=otlp-grpc url="http://127.0.0.1:$GRPC_PORT"
            counter=presage_samples_accepted_total ;;
        presage-otlp-http)
            start_presage "$data"
            gen_target=otlp-http url="http://127.0.0.1:$OTLP_HTTP_PORT/v1/metrics"
            counter=presage_samples_accepted_total ;;
        *) log "unknown target $target"; return 1 ;;
    esac
    local pid=$SERVER_PID
    wait_idle
    local rss0 c0
    rss0=$(status_kib "$pid" VmRSS)
    c0=$(metric "$METRICS_URL" "$counter")

    log "$target, $series series: sending for $DURATION"
    nice -n "$NICE" "$LOADGEN" --target "$gen_target" --url "$url" --series "$series" --batch "$BATCH" \
        --concurrency "$CONCURRENCY" --threads "$THREADS" --duration "$DURATION" --rate 0 \
        --step-ms "$STEP_MS" --start-ago "$START_AGO" --json \
        >"$TMP/gen.json" 2>"$TMP/gen.log" &
    local gen=$!
    PIDS+=("$gen")
    sleep "$WARMUP"
    local c1 t1 k1 m1
    c1=$(metric "$METRICS_URL" "$counter"); t1=$(now); k1=$(cpu_ticks "$pid"); m1=$(machine_busy_ticks)
    local rc=0
    wait "$gen" || rc=$?
    forget "$gen"
    local c2 t2 k2 m2 rss hwm
    c2=$(metric "$METRICS_URL" "$counter"); t2=$(now); k2=$(cpu_ticks "$pid"); m2=$(machine_busy_ticks)
    rss=$(status_kib "$pid" VmRSS); hwm=$(status_kib "$pid" VmHWM)
    cat "$TMP/gen.log" >&2
    if [[ $rc -ne 0 ]]; then
        log "generator exited with $rc"
    fi

    local server_series store_series="" store_index="" store_history=""
    if [[ $target == prometheus ]]; then
        server_series=$(metric "$METRICS_URL" prometheus_tsdb_head_series)
    else
        # presage_store_memory_bytes is refreshed by the 15 s maintenance pass.
        sleep 16
        server_series=$(metric "$METRICS_URL" presage_series)
        # Every part but history (series records, index, and model state once it is exported).
        store_series=$(curl -fsS "$METRICS_URL" | awk '/^presage_store_memory_bytes\{/ && !/part="history"/ { s += $NF }
            END { printf "%.0f\n", s }')
        store_index=0
        store_history=$(metric "$METRICS_URL" presage_store_memory_bytes 'part="history"')
        local rejected
        rejected=$(curl -fsS "$METRICS_URL" | awk '/^presage_samples_rejected_total/ && $NF != 0')
        [[ -z $rejected ]] || { log "samples rejected:"; echo "$rejected" >&2; }
    fi
    stop "$pid"

    local gen_aps gen_cores p50 p99 rounds capped
    gen_aps=$(jq -r '.accepted_per_second' "$TMP/gen.json" 2>/dev/null || echo 0)
    gen_cores=$(jq -r '.cpu_cores // 0' "$TMP/gen.json" 2>/dev/null || echo 0)
    p50=$(jq -r '.latency_p50_ms' "$TMP/gen.json" 2>/dev/null || echo 0)
    p99=$(jq -r '.latency_p99_ms' "$TMP/gen.json" 2>/dev/null || echo 0)
    rounds=$(jq -r '.rounds_min' "$TMP/gen.json" 2>/dev/null || echo 0)
    capped=$(jq -r '.capped_rounds' "$TMP/gen.json" 2>/dev/null || echo 0)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$series" "$target" "$c0" "$c1" "$c2" "$t1" "$t2" "$k1" "$k2" "$rss0" "$rss" "$hwm" \
        "$server_series" "$store_series" "$store_index" "$store_history" \
        "$gen_aps" "$gen_cores" "$p50/$p99" "$rounds/$capped" "$m1" "$m2" >>"$ROWS"
}

# --- main ----------------------------------------------------------------------------------

log "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
log "$("$PRESAGE" --version), $("$PROMETHEUS" --version 2>&1 | head -1)"
for s in $SERIES; do
    for _ in $(seq "$REPEAT"); do
        for t in $TARGETS; do
            run_one "$s" "$t"
        done
    done
done

table() {
    echo "| series | target | accepted samples/s (server, sustained) | vs Prometheus | generator accepted/s | p50 / p99 latency (ms) | server CPU (cores) | generator CPU (cores) | other CPU (cores) | RSS after run (MiB) | peak RSS (MiB) | RSS growth per series (B) | store bytes/series excl. history | history bytes/series | rounds / capped |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    awk -F'\t' -v tck="$CLK_TCK" '
        { n++; for (i = 1; i <= NF; i++) f[n, i] = $i
          rate = ($6 > 0 && $7 > $6) ? ($5 - $4) / ($7 - $6) : 0; r[n] = rate
          if ($2 == "prometheus" && rate > prom[$1]) prom[$1] = rate }
        END {
          for (k = 1; k <= n; k++) {
            series = f[k, 1]; target = f[k, 2]
            dt = f[k, 7] - f[k, 6]
            cores = dt > 0 ? (f[k, 9] - f[k, 8]) / tck / dt : 0
            machine = dt > 0 ? (f[k, 22] - f[k, 21]) / tck / dt : 0
            other = machine - cores - f[k, 18]; if (other < 0) other = 0
            ratio = (target != "prometheus" && prom[series] > 0) ? sprintf("%.2f×", r[k] / prom[series]) : "–"
            srv = f[k, 13] > 0 ? f[k, 13] : series
            growth = (f[k, 11] - f[k, 10]) * 1024 / srv
            if (f[k, 14] != "") {
              excl = sprintf("%.0f", (f[k, 14] + f[k, 15]) / srv); hist = sprintf("%.0f", f[k, 16] / srv)
            } else { excl = "n/a"; hist = "n/a" }
            split(f[k, 19], lat, "/")
            printf "| %d | %s | %.0f | %s | %.0f | %.1f / %.1f | %.2f | %.2f | %.2f | %.0f | %.0f | %.0f | %s | %s | %s |\n",
              series, target, r[k], ratio, f[k, 17], lat[1], lat[2], cores, f[k, 18], other,
              f[k, 11] / 1024, f[k, 12] / 1024, growth, excl, hist, f[k, 20]
          }
        }' "$ROWS"
}

echo
echo "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo); $("$PRESAGE" --version); $("$PROMETHEUS" --version 2>&1 | head -1)"
[[ -z "${PRESAGE_PRELOAD:-}" ]] || echo "Presage ran with LD_PRELOAD=$PRESAGE_PRELOAD"
[[ $NICE == 0 ]] || echo "servers and generator ran at nice $NICE"
echo "generator: --batch $BATCH --concurrency $CONCURRENCY --threads $THREADS --duration $DURATION --rate 0 --step-ms $STEP_MS --start-ago $START_AGO; warm-up ${WARMUP}s excluded from the server-side rate; ratio against Prometheus' best run at the same series count"
echo
table | tee ${RESULTS:+"$RESULTS"}
