//! Every kind of bad input gets a clear answer and a counter, and the next valid request still
//! succeeds: remote_write, OTLP/HTTP (protobuf and JSON) and OTLP/gRPC.

mod common;

use std::io::Write;

use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use presage_config::ByteSize;
use presage_forecaster::ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};
use prost::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn rw(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> Vec<u8> {
    encode(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
            histograms: vec![],
        }],
        metadata: vec![],
    })
}

struct Case {
    name: &'static str,
    content_type: &'static str,
    encoding: Option<&'static str>,
    body: Vec<u8>,
    status: StatusCode,
    message: &'static str,
    reason: &'static str,
}

/// A client that opens a new connection for every request. A refused body may be answered
/// before it is read, and the server then closes the connection; a pooled client could send
/// the next request on it and see a broken pipe.
fn unpooled_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .expect("http client")
}

async fn metric_value(client: &reqwest::Client, http: std::net::SocketAddr, prefix: &str) -> f64 {
    let text = metrics_text(client, http).await.expect("metrics");
    sample_value(&text, prefix).unwrap_or(0.0)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

fn config() -> presage_config::ForecasterConfig {
    let mut cfg = test_config();
    cfg.limits.max_series = 20;
    cfg.limits.max_request_body = ByteSize(64 * 1024);
    cfg.limits.max_decompressed_body = ByteSize(256 * 1024);
    cfg.limits.max_labels_per_series = 8;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_bad_input_table() {
    let running = start(config()).await;
    let http = running.http;
    let client = unpooled_client();
    let now = now_ms();
    let m = |name: &'static str| [("__name__", name), ("job", "t")];

    // The newest sample of `ordered` sets the bar for the out-of-order case; 19 more series
    // fill the store to one below its limit, `ok` takes the last place.
    let setup = [rw(&m("ordered"), &[(now, 1.0)])];
    for body in setup {
        let res = client
            .post(format!("http://{http}/api/v1/write"))
            .header("content-encoding", "snappy")
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .expect("write");
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }
    for i in 0..18 {
        let name = format!("filler_{i}");
        let res = client
            .post(format!("http://{http}/api/v1/write"))
            .header("content-encoding", "snappy")
            .body(rw(&[("__name__", &name)], &[(now, 1.0)]))
            .send()
            .await
            .expect("write");
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }

    let long_name = "n".repeat(200);
    let long_value = "v".repeat(3000);
    let many: Vec<(String, String)> = (0..10)
        .map(|i| (format!("l{i}"), "v".to_string()))
        .collect();
    let mut many_refs: Vec<(&str, &str)> =
        many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    many_refs.push(("__name__", "wide"));
    let bomb = snap::raw::Encoder::new()
        .compress_vec(&vec![0u8; 1 << 20])
        .expect("snappy");
    let snappy = |data: &[u8]| {
        snap::raw::Encoder::new()
            .compress_vec(data)
            .expect("snappy")
    };

    let cases = vec![
        Case {
            name: "not snappy",
            content_type: "application/x-protobuf",
            encoding: Some("snappy"),
            body: b"hello".to_vec(),
            status: StatusCode::BAD_REQUEST,
            message: "invalid snappy body",
            reason: "malformed_body",
        },
        Case {
            name: "not protobuf",
            content_type: "application/x-protobuf",
            encoding: Some("snappy"),
            body: snappy(&[0xff; 32]),
            status: StatusCode::BAD_REQUEST,
            message: "invalid remote_write protobuf",
            reason: "malformed_body",
        },
        Case {
            name: "wrong content type",
            content_type: "application/json",
            encoding: Some("snappy"),
            body: rw(&m("ok"), &[(now, 1.0)]),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: "unsupported Content-Type `application/json`",
            reason: "unsupported_media_type",
        },
        Case {
            name: "wrong encoding",
            content_type: "application/x-protobuf",
            encoding: Some("br"),
            body: rw(&m("ok"), &[(now, 1.0)]),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: "unsupported Content-Encoding `br`",
            reason: "unsupported_media_type",
        },
        Case {
            name: "body over the limit",
            content_type: "application/x-protobuf",
            encoding: Some("snappy"),
            body: vec![7u8; 70 * 1024],
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: "limits.max_request_body",
            reason: "body_too_large",
        },
        Case {
            name: "snappy bomb",
            content_type: "application/x-protobuf",
            encoding: Some("snappy"),
            body: bomb,
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: "limits.max_decompressed_body",
            reason: "body_too_large",
        },
        Case {
            name: "NaN",
            content_type: "application/x-protobuf",
            encoding: Some("snappy"),
            body: rw(&m("ok"), &[(now, f64::NAN)]),
            status: StatusCode::BAD_REQUEST,
            message: "is not finite",
            reason: "non_finite_value",
        },
        Case {
            name: "+Inf",
            content_type: "application/x-protobuf",
            encoding: Some("snappy"),
            body: rw(&m("ok"), &[(now, f64::INFINITY)]),
            status: StatusCode::BAD_REQUEST,
            message: "is not finite",
            reason: "non_finite_value",
        },
        Case {
            name: "future",
            content_type: "application/x-protobuf",
            encoding: Some("snappy"),
            body: rw(&m("ok"), &[(now + 3_600_000, 1.0)]),
            status: StatusCode::BAD_REQUEST,
            message: "ahead of the server clock",
            reason: "too_far_in_future",
        },
        Case {
            name: "past retention",
            content_type: "application/x-protobuf",
            encoding: Some("snappy"),
            body: rw(&m("ok"), &[(now - 15 * 86_400_000, 1.0)]),
            status: StatusCode::BAD_REQUEST,
            message: "older than the retention window",
            reason: "too_old",
        },
        Case {
            name: "out of order",
            content_type: "application/x-protobuf",
            encoding: Some("snappy"),
            body: rw(&m("ordered"), &[(now - 60_000, 1.0)]),
            status: StatusCode::BAD_REQUEST,
            message: "out-of-order sample",
            reason: "out_of_order",
        },
        Case {
            name: "too many labels",
            content_type: "application/x-protobuf",
            encoding: Some("snappy"),
            body: rw(&many_refs, &[(now, 1.0)]),
            status: StatusCode::BAD_REQUEST,
            message: "limits.max_labels_per_series",
            reason: "too_many_labels",
        },
        Case {
            name: "label name too long",
            content_type: "application/x-protobuf",
            encoding: Some("snappy"),
            body: rw(&[("__name__", "x"), (&long_name, "v")], &[(now, 1.0)]),
            status: StatusCode::BAD_REQUEST,
            message: "limits.max_label_name_length",
            reason: "label_name_too_long",
        },
        Case {
            name: "label value too long",
            content_type: "application/x-protobuf",
            encoding: Some("snappy"),
            body: rw(&[("__name__", "x"), ("l", &long_value)], &[(now, 1.0)]),
            status: StatusCode::BAD_REQUEST,
            message: "limits.max_label_value_length",
            reason: "label_value_too_long",
        },
        Case {
            name: "invalid label name",
            content_type: "application/x-protobuf",
            encoding: Some("snappy"),
            body: rw(&[("__name__", "x"), ("bad-name", "v")], &[(now, 1.0)]),
            status: StatusCode::BAD_REQUEST,
            message: "invalid label name",
            reason: "invalid_label",
        },
        Case {
            name: "no metric name",
            content_type: "application/x-protobuf",
            encoding: Some("snappy"),
            body: rw(&[("job", "x")], &[(now, 1.0)]),
            status: StatusCode::BAD_REQUEST,
            message: "has no metric name",
            reason: "missing_metric_name",
        },
    ];

    let mut next_ok = now;
    for case in cases {
        let mut req = client
            .post(format!("http://{http}/api/v1/write"))
            .header("content-type", case.content_type)
            .body(case.body);
        if let Some(enc) = case.encoding {
            req = req.header("content-encoding", enc);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let body = res.text().await.expect("body");
        assert_eq!(status, case.status, "{}: {body}", case.name);
        assert!(body.contains(case.message), "{}: {body}", case.name);
        let counter = if matches!(
            case.reason,
            "malformed_body" | "unsupported_media_type" | "body_too_large"
        ) {
            format!(
                "presage_requests_rejected_total{{protocol=\"remote_write\",reason=\"{}\"}}",
                case.reason
            )
        } else {
            format!(
                "presage_samples_rejected_total{{protocol=\"remote_write\",reason=\"{}\"}}",
                case.reason
            )
        };
        assert!(
            metric_value(&client, http, &counter).await >= 1.0,
            "{}: {counter}",
            case.name
        );

        // The daemon keeps serving valid writes.
        next_ok += 1000;
        let res = client
            .post(format!("http://{http}/api/v1/write"))
            .header("content-encoding", "snappy")
            .body(rw(&m("ok"), &[(next_ok, 1.0)]))
            .send()
            .await
            .expect("valid write");
        assert_eq!(res.status(), StatusCode::NO_CONTENT, "after {}", case.name);
    }

    // The store is now full (20 series): a new series is refused, existing ones keep flowing.
    let res = client
        .post(format!("http://{http}/api/v1/write"))
        .header("content-encoding", "snappy")
        .body(rw(&m("one_too_many"), &[(now, 1.0)]))
        .send()
        .await
        .expect("write");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(
        res.text()
            .await
            .expect("body")
            .contains("series limit of 20 reached")
    );
    let res = client
        .post(format!("http://{http}/api/v1/write"))
        .header("content-encoding", "snappy")
        .body(rw(&m("ok"), &[(next_ok + 1000, 2.0)]))
        .send()
        .await
        .expect("write");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let limited = metric_value(
        &client,
        http,
        "presage_samples_rejected_total{protocol=\"remote_write\",reason=\"series_limit\"}",
    )
    .await;
    assert_eq!(limited, 1.0);
    running.shutdown().await.expect("clean shutdown");
}

fn otlp_json_gauge(name: &str, value: &str, ts_ns: i64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "resourceMetrics": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
            "scopeMetrics": [{"metrics": [{
                "name": name,
                "gauge": {"dataPoints": [{"asDouble": value, "timeUnixNano": ts_ns.to_string()}]}
            }]}]
        }]
    }))
    .expect("json")
}

fn otlp_proto_gauge(name: &str, value: f64, ts_ns: i64) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("svc".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: ts_ns as u64,
                            value: Some(number_data_point::Value::AsDouble(value)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn rejected_points(v: &Value) -> i64 {
    let r = &v["partialSuccess"]["rejectedDataPoints"];
    r.as_i64()
        .or_else(|| r.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_bad_input_table() {
    let running = start(config()).await;
    let base = format!("http://{}/v1/metrics", running.otlp_http);
    let client = unpooled_client();
    let now_ns = now_ms() * 1_000_000;

    struct HttpCase {
        name: &'static str,
        content_type: &'static str,
        gzip: bool,
        body: Vec<u8>,
        status: StatusCode,
        message: &'static str,
    }
    let cases = vec![
        HttpCase {
            name: "malformed protobuf",
            content_type: "application/x-protobuf",
            gzip: false,
            body: vec![0xff; 16],
            status: StatusCode::BAD_REQUEST,
            message: "invalid OTLP metrics protobuf",
        },
        HttpCase {
            name: "malformed JSON",
            content_type: "application/json",
            gzip: false,
            body: b"{\"resourceMetrics\": [".to_vec(),
            status: StatusCode::BAD_REQUEST,
            message: "invalid OTLP/JSON",
        },
        HttpCase {
            name: "wrong content type",
            content_type: "text/plain",
            gzip: false,
            body: b"x".to_vec(),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: "unsupported Content-Type `text/plain`",
        },
        HttpCase {
            name: "body over the limit",
            content_type: "application/x-protobuf",
            gzip: false,
            body: vec![0u8; 70 * 1024],
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: "limits.max_request_body",
        },
        HttpCase {
            name: "gzip bomb",
            content_type: "application/x-protobuf",
            gzip: true,
            body: vec![0u8; 4 << 20],
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: "limits.max_decompressed_body",
        },
        HttpCase {
            name: "invalid gzip",
            content_type: "application/json",
            gzip: false,
            body: b"not gzip".to_vec(),
            status: StatusCode::BAD_REQUEST,
            message: "invalid gzip body",
        },
    ];
    let mut ts = now_ns;
    for case in cases {
        let mut req = client.post(&base).header("content-type", case.content_type);
        if case.gzip {
            req = req
                .header("content-encoding", "gzip")
                .body(gzip(&case.body));
        } else if case.name == "invalid gzip" {
            req = req.header("content-encoding", "gzip").body(case.body);
        } else {
            req = req.body(case.body);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let bytes = res.bytes().await.expect("body");
        let message = if case.content_type == "application/json" {
            let v: Value = serde_json::from_slice(&bytes).expect("JSON status body");
            v["message"].as_str().unwrap_or("").to_string()
        } else {
            presage_forecaster::ingest::otlp_http::RpcStatus::decode(bytes.as_ref())
                .expect("protobuf status body")
                .message
        };
        assert_eq!(status, case.status, "{}: {message}", case.name);
        assert!(message.contains(case.message), "{}: {message}", case.name);

        ts += 1_000_000_000;
        let res = client
            .post(&base)
            .header("content-type", "application/json")
            .body(otlp_json_gauge("ok_gauge", "1.5", ts))
            .send()
            .await
            .expect("valid export");
        assert_eq!(res.status(), StatusCode::OK, "after {}", case.name);
        let v: Value = res.json_or_text().await;
        assert_eq!(rejected_points(&v), 0, "after {}: {v}", case.name);
    }

    // A NaN point is a partial success: 200, with the rejected count and the reason.
    let res = client
        .post(&base)
        .header("content-type", "application/json")
        .body(otlp_json_gauge("nan_gauge", "NaN", ts))
        .send()
        .await
        .expect("export");
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json_or_text().await;
    assert_eq!(rejected_points(&v), 1, "{v}");
    assert!(
        v["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap_or("")
            .contains("not finite"),
        "{v}"
    );

    // Protobuf in, protobuf out, gzip accepted.
    let body = otlp_proto_gauge("ok_gauge", 2.5, ts + 1_000_000_000).encode_to_vec();
    let res = client
        .post(&base)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gzip(&body))
        .send()
        .await
        .expect("export");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/x-protobuf")
    );
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_partial_success_and_limits() {
    let running = start(config()).await;
    let mut client = MetricsServiceClient::connect(format!("http://{}", running.otlp_grpc))
        .await
        .expect("gRPC connects");
    let now_ns = now_ms() * 1_000_000;

    let res = client
        .export(otlp_proto_gauge("g", f64::NAN, now_ns))
        .await
        .expect("export answers")
        .into_inner();
    let partial = res.partial_success.expect("partial success");
    assert_eq!(partial.rejected_data_points, 1);
    assert!(
        partial.error_message.contains("not finite"),
        "{}",
        partial.error_message
    );

    // A message over the decompressed limit is refused by the transport, not by a crash.
    let mut big = otlp_proto_gauge("g", 1.0, now_ns);
    if let Some(metric::Data::Gauge(g)) =
        &mut big.resource_metrics[0].scope_metrics[0].metrics[0].data
    {
        let point = g.data_points[0].clone();
        g.data_points = vec![point; 20_000];
    }
    let status = client.export(big).await.expect_err("too large");
    assert!(
        matches!(
            status.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{status:?}"
    );

    let res = client
        .export(otlp_proto_gauge("g", 1.0, now_ns))
        .await
        .expect("still serving")
        .into_inner();
    assert!(res.partial_success.is_none(), "{res:?}");
    running.shutdown().await.expect("clean shutdown");
}

trait JsonOrText {
    async fn json_or_text(self) -> Value;
}

impl JsonOrText for reqwest::Response {
    async fn json_or_text(self) -> Value {
        let text = self.text().await.unwrap_or_default();
        if text.trim().is_empty() {
            return json!({});
        }
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }
}
