#!/usr/bin/env python3
"""Writes the generated seeds of the binary-format fuzz targets (OTLP protobuf and JSON,
remote_write) into corpus/<target>/: small, valid requests of every kind the forecaster handles.
The text targets' seeds are written by hand.

Needs the `opentelemetry-proto` Python package (installed with the OpenTelemetry SDK exporters
that the integration tests use). Run from anywhere: python3 fuzz/make_seeds.py
"""

import math
import struct
from pathlib import Path

from google.protobuf.json_format import MessageToJson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m

CORPUS = Path(__file__).resolve().parent / "corpus"
T0_NS = 1_767_222_000_000_000_000  # 2025-12-31T23:00:00Z, an hour before the targets' clock
MINUTE_NS = 60_000_000_000
CUMULATIVE = m.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = m.AGGREGATION_TEMPORALITY_DELTA


def s(key, value):
    return KeyValue(key=key, value=AnyValue(string_value=value))


def resource(rm):
    rm.resource.attributes.extend(
        [
            s("service.name", "checkout"),
            s("service.namespace", "shop"),
            s("service.instance.id", "checkout-7f9c"),
            s("host.name", "node-1"),
            KeyValue(key="process.pid", value=AnyValue(int_value=4242)),
        ]
    )


def metrics_request(*fill):
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    resource(rm)
    sm = rm.scope_metrics.add()
    sm.scope.name = "seed"
    sm.scope.version = "1.0"
    for f in fill:
        f(sm.metrics.add())
    return req


def gauge(metric):
    metric.name, metric.unit = "system.filesystem.utilization", "1"
    for i in range(12):
        p = metric.gauge.data_points.add(time_unix_nano=T0_NS + i * MINUTE_NS)
        if i % 2:
            p.as_int = i
        else:
            p.as_double = 0.5 + i / 100
        p.attributes.extend([s("mountpoint", "/"), s("device", "sda1")])


def sum_of(temporality, monotonic):
    def fill(metric):
        metric.name, metric.unit = "http.server.requests", "{request}"
        metric.sum.aggregation_temporality = temporality
        metric.sum.is_monotonic = monotonic
        for i in range(10):
            p = metric.sum.data_points.add(
                start_time_unix_nano=T0_NS, time_unix_nano=T0_NS + i * MINUTE_NS, as_double=i * i
            )
            p.attributes.extend(
                [s("http.method", "GET"), KeyValue(key="code", value=AnyValue(int_value=200))]
            )

    return fill


def histogram(temporality):
    def fill(metric):
        metric.name, metric.unit = "http.server.duration", "s"
        metric.histogram.aggregation_temporality = temporality
        for i in range(3):
            k = i + 1
            p = metric.histogram.data_points.add(
                start_time_unix_nano=T0_NS,
                time_unix_nano=T0_NS + i * MINUTE_NS,
                count=10 * k,
                sum=2.5 * k,
                min=0.01,
                max=3.0,
            )
            p.bucket_counts.extend([k, 3 * k, 5 * k, k])
            p.explicit_bounds.extend([0.05, 0.25, 1.0])
            p.attributes.append(s("route", "/api"))

    return fill


def exponential(metric):
    metric.name, metric.unit = "queue.wait", "s"
    metric.exponential_histogram.aggregation_temporality = CUMULATIVE
    for i in range(3):
        k = i + 1
        p = metric.exponential_histogram.data_points.add(
            start_time_unix_nano=T0_NS,
            time_unix_nano=T0_NS + i * MINUTE_NS,
            count=12 * k,
            sum=40.0 * k,
            scale=3,
            zero_count=k,
            zero_threshold=0.001,
            min=-2.0,
            max=9.0,
        )
        p.positive.offset = 4
        p.positive.bucket_counts.extend([2 * k, 4 * k, 3 * k])
        p.negative.offset = -2
        p.negative.bucket_counts.extend([k, k])
        p.attributes.append(s("queue", "orders"))


def summary(metric):
    metric.name, metric.unit = "db.query.duration", "s"
    for i in range(2):
        k = i + 1
        p = metric.summary.data_points.add(
            start_time_unix_nano=T0_NS,
            time_unix_nano=T0_NS + i * MINUTE_NS,
            count=100 * k,
            sum=12.5 * k,
        )
        p.quantile_values.add(quantile=0.5, value=0.1)
        p.quantile_values.add(quantile=0.99, value=0.9)
        p.attributes.append(s("db", "orders"))


def odd_values(metric):
    """Attribute values of every kind, odd names, and values the store must reject."""
    metric.name = "9lives.odd-name"
    attrs = [
        KeyValue(key="flag", value=AnyValue(bool_value=True)),
        KeyValue(key="ratio", value=AnyValue(double_value=0.25)),
        KeyValue(key="raw", value=AnyValue(bytes_value=b"\x00\x9f\xff")),
        KeyValue(key="2xx.rate", value=AnyValue(string_value="x")),
        KeyValue(key="", value=AnyValue(string_value="dropped")),
    ]
    lst = KeyValue(key="list")
    lst.value.array_value.values.add(string_value="a")
    kvl = KeyValue(key="map")
    kvl.value.kvlist_value.values.append(s("k", "v"))
    attrs += [lst, kvl]
    for i, v in enumerate([math.nan, math.inf, -0.0, 1e308]):
        p = metric.gauge.data_points.add(time_unix_nano=T0_NS + i * MINUTE_NS, as_double=v)
        p.attributes.extend(attrs)


def logs_request():
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    resource(rl)
    sl = rl.scope_logs.add()
    sl.scope.name = "seed"
    lines = [
        (9, "INFO", "GET /api/orders/123 200 in 12ms"),
        (9, "INFO", "GET /api/orders/456 200 in 15ms"),
        (13, "WARN", "slow query on orders: 1200ms"),
        (17, "ERROR", "connection refused to 10.0.0.7:5432"),
        (17, "ERROR", "connection refused to 10.0.0.8:5432"),
    ]
    for i, (severity, text, body) in enumerate(lines):
        r = sl.log_records.add(
            time_unix_nano=T0_NS + i * MINUTE_NS,
            observed_time_unix_nano=T0_NS + i * MINUTE_NS + 1,
            severity_number=severity,
            severity_text=text,
            trace_id=bytes(range(16)),
            span_id=bytes(range(8)),
        )
        r.body.string_value = body
        r.attributes.append(s("logger", "http"))
    r = sl.log_records.add()
    r.body.kvlist_value.values.append(s("msg", "structured"))
    return req


# remote_write: prometheus.WriteRequest written by hand (the messages are tiny), snappy block
# format with literals only.


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(tag, wire, payload):
    key = varint(tag << 3 | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload


def label(name, value):
    return field(1, 2, field(1, 2, name.encode()) + field(2, 2, value.encode()))


def sample(ts_ms, value):
    return field(2, 2, field(1, 1, struct.pack("<d", value)) + field(2, 0, varint(ts_ms)))


def series(name, labels, samples, histograms=()):
    body = label("__name__", name) + b"".join(label(k, v) for k, v in labels)
    body += b"".join(sample(t, v) for t, v in samples)
    body += b"".join(field(4, 2, h) for h in histograms)
    return field(1, 2, body)


def metadata(kind, family, help_text, unit):
    body = field(1, 0, varint(kind)) + field(2, 2, family.encode())
    body += field(4, 2, help_text.encode()) + field(5, 2, unit.encode())
    return field(3, 2, body)


def snappy_literal(raw):
    out = bytearray(varint(len(raw)))
    for start in range(0, len(raw), 65536):
        chunk = raw[start : start + 65536]
        n = len(chunk) - 1
        if n < 60:
            out.append(n << 2)
        elif n < 256:
            out += bytes([60 << 2, n])
        else:
            out += bytes([61 << 2]) + n.to_bytes(2, "little")
        out += chunk
    return bytes(out)


def write_request():
    t0 = T0_NS // 1_000_000
    minutes = lambda f: [(t0 + i * 60_000, f(i)) for i in range(12)]  # noqa: E731
    return b"".join(
        [
            series("node_load1", [("instance", "node-1:9100"), ("job", "node")], minutes(lambda i: 0.5 + i / 10)),
            series("node_network_receive_bytes_total", [("device", "eth0")], minutes(lambda i: i * 1000.0)),
            series("http_request_duration_seconds_bucket", [("le", "+Inf")], minutes(lambda i: i * 3.0)),
            series("native_histogram", [], [], histograms=[b"\x08\x01"]),
            metadata(1, "node_network_receive_bytes_total", "Bytes received.", "bytes"),
        ]
    )


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def main():
    requests = {
        "gauge": metrics_request(gauge),
        "sums": metrics_request(sum_of(CUMULATIVE, True), sum_of(DELTA, True), sum_of(CUMULATIVE, False)),
        "histogram_cumulative": metrics_request(histogram(CUMULATIVE)),
        "histogram_delta": metrics_request(histogram(DELTA)),
        "exponential_histogram": metrics_request(exponential),
        "summary": metrics_request(summary),
        "odd_values": metrics_request(odd_values),
    }
    for name, req in requests.items():
        write("otlp_metrics_protobuf", f"{name}.pb", req.SerializeToString())
        write("otlp_json", f"metrics_{name}.json", MessageToJson(req, indent=None).encode())
    logs = logs_request()
    write("otlp_logs_protobuf", "logs.pb", logs.SerializeToString())
    write("otlp_json", "logs.json", MessageToJson(logs, indent=None).encode())
    # The first byte tells the remote_write target how to read the rest.
    raw = write_request()
    write("remote_write", "body.snappy", b"\x00" + snappy_literal(raw))
    write("remote_write", "request.pb", b"\x01" + raw)
    write("remote_write", "history.pb", b"\x03" + raw)


if __name__ == "__main__":
    main()
