#!/usr/bin/env bash
# Footprint of presage-agent beside Debian's prometheus-node-exporter, same machine, same run.
#
# The agent collects host metrics, scrapes one target exposing 500 series and tails one log file
# written at 100 lines/s, with a 10 s interval, sending to a local forecaster. node-exporter runs
# at the same time with its default collectors and is scraped every 10 s (a curl loop, as
# Prometheus would). For both, the script reads /proc: peak RSS (VmHWM), RSS at the end (VmRSS)
# and CPU time (utime + stime) over the run, as a share of one core. It also checks the data
# arrived (series of the scrape target, log lines) so the agent's figures are for real work.
#
# Usage:  benches/agent-footprint.sh
# Knobs (environment):
#   DURATION=300 (seconds)  INTERVAL=10s  SERIES=500  LINES_PER_SEC=100
#   NODE_EXPORTER=/usr/bin/prometheus-node-exporter  SKIP_BUILD=1 (use existing builds)
#   BASE_PORT=19480 (uses BASE_PORT+0..5)  OUT=/tmp/agent-bench.md (the Markdown section)
# Everything listens on 127.0.0.1; every process this script starts is stopped on exit.

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${DURATION:-300}
INTERVAL=${INTERVAL:-10s}
SERIES=${SERIES:-500}
LINES_PER_SEC=${LINES_PER_SEC:-100}
NODE_EXPORTER=${NODE_EXPORTER:-/usr/bin/prometheus-node-exporter}
BASE_PORT=${BASE_PORT:-19480}
OUT=${OUT:-/tmp/agent-bench.md}

GRPC_PORT=$((BASE_PORT + 0))
OTLP_HTTP_PORT=$((BASE_PORT + 1))
HTTP_PORT=$((BASE_PORT + 2))
TARGET_PORT=$((BASE_PORT + 3))
NODE_PORT=$((BASE_PORT + 4))
AGENT_TELEMETRY=$((BASE_PORT + 5))
CLK_TCK=$(getconf CLK_TCK)

for tool in curl python3 strip "$NODE_EXPORTER"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/presage-agent-bench.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

if [ -z "${SKIP_BUILD:-}" ]; then
    echo "==> building presage-agent (release) and the forecaster (debug: it is only the sink)"
    cargo build --release -p presage-agent
    cargo build -p presage-forecaster --bin presage
fi
AGENT=$ROOT/target/release/presage-agent
PRESAGE=$ROOT/target/debug/presage
cp "$AGENT" "$TMP/presage-agent"
strip "$TMP/presage-agent"
AGENT_SIZE=$(stat -c %s "$TMP/presage-agent")
NODE_SIZE=$(stat -c %s "$(readlink -f "$NODE_EXPORTER")")

wait_http() { # url
    for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "not answering: $1" >&2; return 1
}

# /proc readings: "<VmHWM kB> <VmRSS kB> <utime+stime ticks>"
proc_stats() { # pid
    local hwm rss ticks
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$1/status")
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status")
    ticks=$(sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}')
    echo "$hwm $rss $ticks"
}

echo "==> forecaster (sink) on 127.0.0.1:$GRPC_PORT"
cat > "$TMP/presage.toml" <<EOF
[server]
otlp_grpc = "127.0.0.1:$GRPC_PORT"
otlp_http = "127.0.0.1:$OTLP_HTTP_PORT"
http = "127.0.0.1:$HTTP_PORT"

[storage]
dir = "$TMP/presage-data"
EOF
"$PRESAGE" serve --config "$TMP/presage.toml" >"$TMP/presage.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$HTTP_PORT/-/ready"

echo "==> scrape target with $SERIES series on 127.0.0.1:$TARGET_PORT"
cat > "$TMP/target.py" <<'EOF'
import http.server, sys, time
port, series = int(sys.argv[1]), int(sys.argv[2])
start = time.time()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        t = time.time() - start
        out = ["# HELP app_requests_total Requests.", "# TYPE app_requests_total counter"]
        n = series // 2
        for i in range(n):
            out.append('app_requests_total{route="/r%d",code="%d"} %d' % (i % 50, 200 + i // 50, int(t * (i + 1))))
        out += ["# HELP app_queue_depth Queue depth.", "# TYPE app_queue_depth gauge"]
        for i in range(series - n):
            out.append('app_queue_depth{queue="q%d"} %.3f' % (i, (t * 7 + i) % 100))
        body = ("\n".join(out) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
EOF
python3 "$TMP/target.py" "$TARGET_PORT" "$SERIES" &
PIDS+=($!)
wait_http "http://127.0.0.1:$TARGET_PORT/metrics"

echo "==> log writer, $LINES_PER_SEC lines/s"
mkdir -p "$TMP/logs"
cat > "$TMP/writer.py" <<'EOF'
import sys, time, random
path, rate = sys.argv[1], int(sys.argv[2])
levels = ["INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG"]
start, i = time.time(), 0
with open(path, "a", buffering=1) as f:
    while True:
        due = start + i / rate
        now = time.time()
        if due > now:
            time.sleep(due - now)
        f.write("2026-01-01T00:00:00Z %s request %d served in %d ms user=u%d\n" % (random.choice(levels), i, random.randint(1, 900), i % 997))
        i += 1
EOF
python3 "$TMP/writer.py" "$TMP/logs/app.log" "$LINES_PER_SEC" &
PIDS+=($!)

cat > "$TMP/agent.toml" <<EOF
[agent]
endpoint = "http://127.0.0.1:$GRPC_PORT"
interval = "$INTERVAL"
state_dir = "$TMP/agent-state"
telemetry = "127.0.0.1:$AGENT_TELEMETRY"
service_name = "bench"

[[scrape]]
url = "http://127.0.0.1:$TARGET_PORT/metrics"
job = "bench-target"

[[logs]]
paths = ["$TMP/logs/*.log"]
EOF

echo "==> presage-agent and node-exporter, ${DURATION}s"
PRESAGE_LOG=warn "$TMP/presage-agent" --config "$TMP/agent.toml" >"$TMP/agent.log" 2>&1 &
AGENT_PID=$!
PIDS+=($AGENT_PID)
"$NODE_EXPORTER" --web.listen-address="127.0.0.1:$NODE_PORT" >"$TMP/node-exporter.log" 2>&1 &
NODE_PID=$!
PIDS+=($NODE_PID)
wait_http "http://127.0.0.1:$AGENT_TELEMETRY/-/healthy"
wait_http "http://127.0.0.1:$NODE_PORT/metrics"
SCRAPE_INTERVAL=$(python3 -c "import sys; s='$INTERVAL'; print(float(s[:-1]) * {'s':1,'m':60}[s[-1]])")
(
    while true; do
        curl -fsS -o /dev/null "http://127.0.0.1:$NODE_PORT/metrics" || true
        sleep "$SCRAPE_INTERVAL"
    done
) &
PIDS+=($!)

read -r _ _ AGENT_T0 < <(proc_stats "$AGENT_PID")
read -r _ _ NODE_T0 < <(proc_stats "$NODE_PID")
START=$(date +%s.%N)
sleep "$DURATION"
END=$(date +%s.%N)
read -r AGENT_HWM AGENT_RSS AGENT_T1 < <(proc_stats "$AGENT_PID")
read -r NODE_HWM NODE_RSS NODE_T1 < <(proc_stats "$NODE_PID")
ELAPSED=$(python3 -c "print($END - $START)")

metric() { # name: the agent's own counter
    curl -fsS "http://127.0.0.1:$AGENT_TELEMETRY/metrics" | awk -v k="$1" '$1 == k {print $2}'
}
LINES_READ=$(metric presage_agent_log_lines_read_total)
POINTS_SCRAPE=$(metric 'presage_agent_points_collected_total{source="scrape"}')
POINTS_HOST=$(metric 'presage_agent_points_collected_total{source="host"}')
SENT=$(metric 'presage_agent_batches_sent_total{signal="metrics"}')
SPOOLED=$(metric presage_agent_batches_spooled_total)
TARGET_SERIES=$(curl -fsS "http://127.0.0.1:$HTTP_PORT/api/v1/series?match[]=%7Bjob%3D%22bench-target%22%7D&limit=10000" | python3 -c "import json,sys; print(len(json.load(sys.stdin)['data']))")

python3 - "$OUT" <<EOF
import sys
tck = $CLK_TCK
elapsed = $ELAPSED
a_cpu = ($AGENT_T1 - $AGENT_T0) / tck / elapsed * 100
n_cpu = ($NODE_T1 - $NODE_T0) / tck / elapsed * 100
a_hwm, n_hwm = $AGENT_HWM / 1024, $NODE_HWM / 1024
a_rss, n_rss = $AGENT_RSS / 1024, $NODE_RSS / 1024
size_a, size_n = $AGENT_SIZE / 1e6, $NODE_SIZE / 1e6
ratio = lambda a, b: "%.2f" % (a / b) if b else "n/a"
text = f"""## Agent footprint vs prometheus-node-exporter

Command: \`benches/agent-footprint.sh\` (DURATION=$DURATION s, interval $INTERVAL, one scrape target
of $SERIES series, one log file at $LINES_PER_SEC lines/s; node-exporter 1.5 with its default
collectors, scraped every $INTERVAL by curl; both measured from /proc in the same run). Machine: $(nproc) cores,
shared with other builds. The agent sends to a local forecaster (debug build, not measured).

| | presage-agent | prometheus-node-exporter | ratio (agent / node-exporter) |
| --- | --- | --- | --- |
| peak RSS (VmHWM) | {a_hwm:.1f} MiB | {n_hwm:.1f} MiB | {ratio(a_hwm, n_hwm)} |
| RSS at the end | {a_rss:.1f} MiB | {n_rss:.1f} MiB | {ratio(a_rss, n_rss)} |
| CPU, share of one core | {a_cpu:.3f}% | {n_cpu:.3f}% | {ratio(a_cpu, n_cpu)} |
| stripped binary | {size_a:.1f} MB | {size_n:.1f} MB (as packaged) | {ratio(size_a, size_n)} |

Work done by the agent in {elapsed:.0f} s: $LINES_READ log lines read, $POINTS_SCRAPE scraped and
$POINTS_HOST host data points, $SENT metric batches acknowledged ($SPOOLED spooled); the
forecaster holds $TARGET_SERIES series of the scrape target. Targets: RSS ≤ 10 MiB and at most
half of node-exporter's, CPU ≤ 0.5% of a core, stripped binary ≤ 10 MB.
"""
open(sys.argv[1], "w").write(text)
print(text)
EOF
