//! Sending one serialized OTLP request: gRPC through tonic's client (with a pass-through codec,
//! so spooled bytes go out as they are), or OTLP/HTTP with protobuf bodies. Every answer is
//! classified as accepted (possibly partially), retryable, or refused for good, following the
//! OTLP specification — except that authentication failures are retried (with backoff, after a
//! clear error in the log): a wrong token is a configuration problem on one side, and the spool
//! keeps the data until it is fixed.

use std::io::Write;
use std::marker::PhantomData;
use std::time::Duration;

use bytes::{BufMut, Bytes};
use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::Full;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use presage_config::{AgentSettings, ExportProtocol};
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::Signal;
use crate::net::{Connector, HttpClient, TlsConfig, tls_config};

/// What the forecaster made of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Acknowledged; `rejected` items were refused inside an otherwise accepted request.
    Accepted {
        /// Items refused (OTLP partial success).
        rejected: i64,
        /// Why, as the forecaster said.
        message: String,
    },
    /// Failed in a way worth retrying; the forecaster may have asked for a delay.
    Retry(String, Option<Duration>),
    /// Refused for good (malformed, too large): retrying cannot help.
    Refused(String),
    /// The token was missing or refused (HTTP 401/403, gRPC `UNAUTHENTICATED` or
    /// `PERMISSION_DENIED`): retried like [`Outcome::Retry`], after an error naming the setting.
    Unauthorized(String, Option<Duration>),
}

/// Passes already-serialized requests through and decodes the response.
struct RawCodec<R>(PhantomData<R>);

struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

struct ProstDecoder<R>(PhantomData<R>);

impl<R: Message + Default> Decoder for ProstDecoder<R> {
    type Item = R;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<R>, Status> {
        R::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("undecodable response: {e}")))
    }
}

impl<R: Message + Default + Send + 'static> Codec for RawCodec<R> {
    type Encode = Bytes;
    type Decode = R;
    type Encoder = RawEncoder;
    type Decoder = ProstDecoder<R>;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> ProstDecoder<R> {
        ProstDecoder(PhantomData)
    }
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.rpc.Status`, as carried in `grpc-status-details-bin`.
#[derive(Clone, PartialEq, Message)]
struct StatusDetails {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

/// Longest delay a server may ask for (`Retry-After`, `RetryInfo`).
const MAX_SERVER_DELAY: Duration = Duration::from_secs(300);

/// The delay of a `google.rpc.RetryInfo` among the status details, if the server sent one.
fn grpc_retry_delay(status: &Status) -> Option<Duration> {
    let details = StatusDetails::decode(status.details()).ok()?;
    let info = details
        .details
        .iter()
        .find(|d| d.type_url.ends_with("/google.rpc.RetryInfo"))?;
    let delay = RetryInfo::decode(info.value.as_slice()).ok()?.retry_delay?;
    let secs = u64::try_from(delay.seconds).ok()?;
    let nanos = u32::try_from(delay.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)?;
    Some(Duration::new(secs, nanos).min(MAX_SERVER_DELAY))
}

/// Classifies a gRPC status as the OTLP specification says (plus auth failures: retried). A
/// retryable status may carry a `google.rpc.RetryInfo` delay, which is honoured.
pub(crate) fn classify_grpc(status: &Status) -> Outcome {
    let msg = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => Outcome::Unauthorized(msg, None),
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Outcome::Retry(msg, grpc_retry_delay(status)),
        _ => Outcome::Refused(msg),
    }
}

/// Classifies an OTLP/HTTP status.
pub(crate) fn classify_http(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Outcome {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    let msg = format!("HTTP {status}: {}", text.trim());
    match status.as_u16() {
        401 | 403 => Outcome::Unauthorized(msg, retry_after),
        429 | 502 | 503 | 504 | 408 => Outcome::Retry(msg, retry_after),
        _ => Outcome::Refused(msg),
    }
}

fn retry_after(v: Option<&HeaderValue>) -> Option<Duration> {
    let secs: u64 = v?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_SERVER_DELAY))
}

/// The connection to the forecaster.
pub(crate) enum Transport {
    /// OTLP/gRPC.
    Grpc {
        /// tonic's client over a lazily connecting channel.
        client: tonic::client::Grpc<Channel>,
        /// `authorization` metadata.
        auth: Option<MetadataValue<Ascii>>,
        /// Per-request timeout.
        timeout: Duration,
    },
    /// OTLP/HTTP.
    Http {
        /// The HTTP client.
        client: HttpClient,
        /// `http(s)://host:port` plus any path prefix, without a trailing slash.
        base: String,
        /// `Authorization` header.
        auth: Option<HeaderValue>,
        /// Compress bodies.
        gzip: bool,
        /// Per-request timeout.
        timeout: Duration,
    },
}

impl Transport {
    /// Builds the transport `settings` describe; `token` is the bearer token, if any.
    pub(crate) fn new(settings: &AgentSettings, token: Option<&str>) -> Result<Self, String> {
        let endpoint = settings
            .effective_endpoint()
            .trim_end_matches('/')
            .to_string();
        let https = endpoint.starts_with("https://");
        let alpn: &[&[u8]] = match settings.protocol {
            ExportProtocol::Grpc => &[b"h2"],
            ExportProtocol::Http => &[b"http/1.1"],
        };
        let tls: Option<TlsConfig> = if https {
            let client = settings
                .tls_cert_file
                .as_deref()
                .zip(settings.tls_key_file.as_deref());
            Some(tls_config(settings.tls_ca_file.as_deref(), client, alpn)?)
        } else {
            None
        };
        let connector = Connector::new(tls, Duration::from_secs(5).min(settings.timeout));
        let bearer = token.map(|t| format!("Bearer {}", t.trim()));
        match settings.protocol {
            ExportProtocol::Grpc => {
                let channel = Endpoint::from_shared(endpoint.clone())
                    .map_err(|e| format!("invalid endpoint {endpoint}: {e}"))?
                    .timeout(settings.timeout)
                    .connect_timeout(Duration::from_secs(5).min(settings.timeout))
                    .connect_with_connector_lazy(connector);
                let mut client = tonic::client::Grpc::new(channel)
                    .accept_compressed(CompressionEncoding::Gzip)
                    .max_decoding_message_size(4 << 20);
                if settings.gzip {
                    client = client.send_compressed(CompressionEncoding::Gzip);
                }
                let auth = bearer
                    .map(|b| b.parse::<MetadataValue<Ascii>>())
                    .transpose()
                    .map_err(|_| {
                        "the token contains characters not allowed in a header".to_string()
                    })?;
                Ok(Self::Grpc {
                    client,
                    auth,
                    timeout: settings.timeout,
                })
            }
            ExportProtocol::Http => {
                let auth = bearer
                    .map(|b| HeaderValue::from_str(&b))
                    .transpose()
                    .map_err(|_| {
                        "the token contains characters not allowed in a header".to_string()
                    })?;
                endpoint
                    .parse::<Uri>()
                    .map_err(|e| format!("invalid endpoint {endpoint}: {e}"))?;
                Ok(Self::Http {
                    client: HttpClient::new(connector, 1 << 20),
                    base: endpoint,
                    auth,
                    gzip: settings.gzip,
                    timeout: settings.timeout,
                })
            }
        }
    }

    /// Sends one serialized `Export*ServiceRequest`.
    pub(crate) async fn send(&mut self, signal: Signal, payload: &Bytes) -> Outcome {
        match self {
            Self::Grpc {
                client,
                auth,
                timeout,
            } => {
                let call = async {
                    if let Err(e) = client.ready().await {
                        return Outcome::Retry(format!("not connected: {e}"), None);
                    }
                    let mut req = tonic::Request::new(payload.clone());
                    req.set_timeout(*timeout);
                    if let Some(a) = auth {
                        req.metadata_mut().insert("authorization", a.clone());
                    }
                    match signal {
                        Signal::Metrics => {
                            let path = PathAndQuery::from_static(
                                "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                            );
                            match client
                                .unary(
                                    req,
                                    path,
                                    RawCodec::<ExportMetricsServiceResponse>(PhantomData),
                                )
                                .await
                            {
                                Ok(r) => metrics_outcome(r.into_inner()),
                                Err(status) => classify_grpc(&status),
                            }
                        }
                        Signal::Logs => {
                            let path = PathAndQuery::from_static(
                                "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                            );
                            match client
                                .unary(
                                    req,
                                    path,
                                    RawCodec::<ExportLogsServiceResponse>(PhantomData),
                                )
                                .await
                            {
                                Ok(r) => logs_outcome(r.into_inner()),
                                Err(status) => classify_grpc(&status),
                            }
                        }
                    }
                };
                match tokio::time::timeout(*timeout + Duration::from_secs(1), call).await {
                    Ok(outcome) => outcome,
                    Err(_) => Outcome::Retry("timed out".into(), None),
                }
            }
            Self::Http {
                client,
                base,
                auth,
                gzip,
                timeout,
            } => {
                let path = match signal {
                    Signal::Metrics => "/v1/metrics",
                    Signal::Logs => "/v1/logs",
                };
                let uri = match format!("{base}{path}").parse::<Uri>() {
                    Ok(u) => u,
                    Err(e) => return Outcome::Refused(format!("invalid URL: {e}")),
                };
                let body = if *gzip {
                    let mut enc =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    match enc.write_all(payload).and_then(|()| enc.finish()) {
                        Ok(b) => Bytes::from(b),
                        Err(e) => return Outcome::Refused(format!("gzip failed: {e}")),
                    }
                } else {
                    payload.clone()
                };
                let mut req = Request::new(Full::new(body));
                *req.method_mut() = Method::POST;
                *req.uri_mut() = uri;
                let h = req.headers_mut();
                h.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-protobuf"),
                );
                if *gzip {
                    h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                }
                if let Some(a) = auth {
                    h.insert(AUTHORIZATION, a.clone());
                }
                match client.send(req, *timeout).await {
                    Err(e) => Outcome::Retry(e, None),
                    Ok(res) if res.status == StatusCode::OK => match signal {
                        Signal::Metrics => match ExportMetricsServiceResponse::decode(res.body) {
                            Ok(r) => metrics_outcome(r),
                            Err(_) => Outcome::Accepted {
                                rejected: 0,
                                message: String::new(),
                            },
                        },
                        Signal::Logs => match ExportLogsServiceResponse::decode(res.body) {
                            Ok(r) => logs_outcome(r),
                            Err(_) => Outcome::Accepted {
                                rejected: 0,
                                message: String::new(),
                            },
                        },
                    },
                    Ok(res) => classify_http(
                        res.status,
                        retry_after(res.headers.get(RETRY_AFTER)),
                        &res.body,
                    ),
                }
            }
        }
    }
}

fn metrics_outcome(r: ExportMetricsServiceResponse) -> Outcome {
    let (rejected, message) = r.partial_success.map_or((0, String::new()), |p| {
        (p.rejected_data_points, p.error_message)
    });
    Outcome::Accepted { rejected, message }
}

fn logs_outcome(r: ExportLogsServiceResponse) -> Outcome {
    let (rejected, message) = r.partial_success.map_or((0, String::new()), |p| {
        (p.rejected_log_records, p.error_message)
    });
    Outcome::Accepted { rejected, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_follow_the_otlp_specification() {
        let retry = |c| matches!(classify_grpc(&Status::new(c, "x")), Outcome::Retry(..));
        for c in [
            Code::Unavailable,
            Code::ResourceExhausted,
            Code::DeadlineExceeded,
        ] {
            assert!(retry(c), "{c:?}");
        }
        for c in [Code::Unauthenticated, Code::PermissionDenied] {
            assert!(
                matches!(
                    classify_grpc(&Status::new(c, "x")),
                    Outcome::Unauthorized(..)
                ),
                "{c:?}"
            );
        }
        for c in [
            Code::InvalidArgument,
            Code::Unimplemented,
            Code::Internal,
            Code::NotFound,
        ] {
            assert!(!retry(c), "{c:?}");
        }
    }

    #[test]
    fn grpc_retry_info_sets_the_delay() {
        let status_with = |delay: ProtoDuration| {
            let details = StatusDetails {
                code: Code::ResourceExhausted as i32,
                message: "overloaded".into(),
                details: vec![
                    ProtoAny {
                        type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
                        value: vec![1, 2, 3],
                    },
                    ProtoAny {
                        type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                        value: RetryInfo {
                            retry_delay: Some(delay),
                        }
                        .encode_to_vec(),
                    },
                ],
            };
            Status::with_details(
                Code::ResourceExhausted,
                "overloaded",
                Bytes::from(details.encode_to_vec()),
            )
        };
        let status = status_with(ProtoDuration {
            seconds: 2,
            nanos: 500_000_000,
        });
        assert_eq!(
            classify_grpc(&status),
            Outcome::Retry(
                "ResourceExhausted: overloaded".into(),
                Some(Duration::from_millis(2500))
            )
        );
        // Capped, and nonsense is ignored.
        let status = status_with(ProtoDuration {
            seconds: 86_400,
            nanos: 0,
        });
        assert!(
            matches!(classify_grpc(&status), Outcome::Retry(_, Some(d)) if d == MAX_SERVER_DELAY)
        );
        let status = status_with(ProtoDuration {
            seconds: -1,
            nanos: 0,
        });
        assert!(matches!(classify_grpc(&status), Outcome::Retry(_, None)));
        let status = Status::with_details(
            Code::Unavailable,
            "x",
            Bytes::from_static(b"\xff\xff not protobuf"),
        );
        assert!(matches!(classify_grpc(&status), Outcome::Retry(_, None)));
        assert_eq!(
            classify_grpc(&Status::resource_exhausted("x")),
            Outcome::Retry("ResourceExhausted: x".into(), None)
        );
    }

    #[test]
    fn http_statuses_follow_the_otlp_specification() {
        let o = classify_http(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(Duration::from_secs(3)),
            b"busy",
        );
        assert_eq!(
            o,
            Outcome::Retry(
                "HTTP 503 Service Unavailable: busy".into(),
                Some(Duration::from_secs(3))
            )
        );
        assert!(matches!(
            classify_http(StatusCode::TOO_MANY_REQUESTS, None, b""),
            Outcome::Retry(..)
        ));
        assert!(matches!(
            classify_http(StatusCode::BAD_REQUEST, None, b"bad"),
            Outcome::Refused(_)
        ));
        assert!(matches!(
            classify_http(StatusCode::UNAUTHORIZED, None, b""),
            Outcome::Unauthorized(..)
        ));
        assert!(matches!(
            classify_http(StatusCode::PAYLOAD_TOO_LARGE, None, b""),
            Outcome::Refused(_)
        ));
        assert_eq!(
            retry_after(Some(&HeaderValue::from_static("7"))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(retry_after(Some(&HeaderValue::from_static("soon"))), None);
    }

    /// A one-shot HTTP server of our own: answers each connection's request with `status`,
    /// `headers` and `body`, and hands back the raw request.
    async fn answer_once(
        status: &'static str,
        headers: &'static str,
        body: Vec<u8>,
    ) -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if req.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{headers}\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(&body).await.unwrap();
            req
        });
        (addr, task)
    }

    fn http_settings(addr: std::net::SocketAddr) -> AgentSettings {
        AgentSettings {
            protocol: ExportProtocol::Http,
            endpoint: Some(format!("http://{addr}")),
            timeout: Duration::from_secs(5),
            ..AgentSettings::default()
        }
    }

    #[tokio::test]
    async fn otlp_http_sends_token_gzip_protobuf_and_reads_partial_success() {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;
        let response = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: 3,
                error_message: "stream limit".into(),
            }),
        }
        .encode_to_vec();
        let (addr, server) = answer_once(
            "200 OK",
            "Content-Type: application/x-protobuf\r\n",
            response,
        )
        .await;
        let mut t = Transport::new(&http_settings(addr), Some("s3cret\n")).unwrap();
        let payload = Bytes::from_static(b"serialized request bytes");
        let outcome = t.send(Signal::Logs, &payload).await;
        assert_eq!(
            outcome,
            Outcome::Accepted {
                rejected: 3,
                message: "stream limit".into()
            }
        );
        let req = server.await.unwrap();
        let end = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
        assert!(head.starts_with("post /v1/logs http/1.1"), "{head}");
        assert!(head.contains("authorization: bearer s3cret\r\n"), "{head}");
        assert!(
            head.contains("content-type: application/x-protobuf"),
            "{head}"
        );
        assert!(head.contains("content-encoding: gzip"), "{head}");
        let mut body = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&req[end + 4..]),
            &mut body,
        )
        .unwrap();
        assert_eq!(body, payload.to_vec());
    }

    #[tokio::test]
    async fn otlp_http_overload_is_retried_after_the_servers_delay() {
        let (addr, server) = answer_once(
            "503 Service Unavailable",
            "Retry-After: 2\r\n",
            b"busy".to_vec(),
        )
        .await;
        let mut t = Transport::new(&http_settings(addr), None).unwrap();
        let outcome = t.send(Signal::Metrics, &Bytes::from_static(b"x")).await;
        assert_eq!(
            outcome,
            Outcome::Retry(
                "HTTP 503 Service Unavailable: busy".into(),
                Some(Duration::from_secs(2))
            )
        );
        let req = String::from_utf8_lossy(&server.await.unwrap()).to_ascii_lowercase();
        assert!(req.starts_with("post /v1/metrics"));
        assert!(!req.contains("authorization"));
        // Nobody listening: retried too.
        let mut t = Transport::new(&http_settings(addr), None).unwrap();
        assert!(matches!(
            t.send(Signal::Metrics, &Bytes::from_static(b"x")).await,
            Outcome::Retry(..)
        ));
    }
}
