//! Admission control shared by every ingest path (remote_write, OTLP/HTTP, OTLP/gRPC).
//!
//! Two global bounds, both taken without waiting: a request that does not fit is shed at once
//! (HTTP 429 with `Retry-After`, gRPC `RESOURCE_EXHAUSTED`) instead of queueing, so a flood
//! costs the daemon little more than the requests it has already taken, and everything else
//! (`/-/healthy`, `/metrics`, the API) keeps answering.
//!
//! - `limits.max_concurrent_ingest_requests`: a [`Permit`] per request being processed;
//! - `limits.max_inflight_ingest_bytes`: bytes a request holds (its body as it is read, then
//!   its decompressed form), reserved on its permit with [`Permit::reserve`] before they are
//!   allocated and given back when the permit is dropped.
//!
//! And one bound on the whole process, `limits.memory_limit` ([`MemoryGuard`]): above its
//! shedding threshold no request is admitted, and a request reading its body is cut off.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures::StreamExt;
use futures::future::{Either, Ready, ready};
use prometheus::{IntCounterVec, IntGauge};
use prost::Message;
use tonic::codegen::{Bytes, Service};
use tonic::server::NamedService;
use tonic::{Code, Status};

use crate::memory::MemoryGuard;

/// Seconds a shed client is asked to wait (`Retry-After`, gRPC `RetryInfo`).
pub const RETRY_AFTER_SECS: u64 = 1;

/// Runs CPU-heavy ingest work (inflating, decoding, storing) without holding up the async
/// executor: on a multi-threaded runtime the worker hands its other tasks to another thread
/// first, so health checks, `/metrics` and the API keep being served while every core is busy
/// with ingest. The number of such threads is bounded by the admitted requests.
pub(crate) fn run_blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Why a request was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    /// `limits.max_concurrent_ingest_requests` requests were already being processed.
    ConcurrentRequests,
    /// The request's bytes would pass `limits.max_inflight_ingest_bytes`.
    InflightBytes,
    /// The process is near `limits.memory_limit`.
    Memory,
}

impl ShedReason {
    /// Every reason, for pre-registering counters.
    pub const ALL: [ShedReason; 3] = [
        ShedReason::ConcurrentRequests,
        ShedReason::InflightBytes,
        ShedReason::Memory,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ShedReason::ConcurrentRequests => "concurrent_requests",
            ShedReason::InflightBytes => "inflight_bytes",
            ShedReason::Memory => "memory",
        }
    }

    /// The message sent to the client.
    pub fn message(self) -> String {
        let what = match self {
            ShedReason::ConcurrentRequests => {
                "too many ingest requests in progress (limits.max_concurrent_ingest_requests)"
            }
            ShedReason::InflightBytes => {
                "too many ingest bytes in progress (limits.max_inflight_ingest_bytes)"
            }
            ShedReason::Memory => "the daemon is at its memory limit (limits.memory_limit)",
        };
        format!("overloaded: {what}; retry after {RETRY_AFTER_SECS}s")
    }
}

/// Where admission publishes what it does; absent in unit tests.
#[derive(Clone)]
pub struct AdmissionMetrics {
    /// `presage_ingest_shed_total{listener,reason}`.
    pub shed: IntCounterVec,
    /// Requests holding a permit.
    pub requests: IntGauge,
    /// Bytes reserved on permits.
    pub bytes: IntGauge,
}

/// The global ingest limits and what is in use.
pub struct Admission {
    max_requests: usize,
    max_bytes: usize,
    requests: AtomicUsize,
    bytes: AtomicUsize,
    memory: Option<MemoryGuard>,
    metrics: Option<AdmissionMetrics>,
}

impl Admission {
    /// At most `max_requests` permits at once, holding at most `max_bytes` together.
    pub fn new(max_requests: usize, max_bytes: usize, metrics: Option<AdmissionMetrics>) -> Self {
        Self {
            max_requests,
            max_bytes,
            requests: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            memory: None,
            metrics,
        }
    }

    /// Also sheds every request while `memory` says the process is above its threshold.
    pub fn with_memory(mut self, memory: Option<MemoryGuard>) -> Self {
        self.memory = memory;
        self
    }

    /// The limits of `app`'s configuration, published through its telemetry.
    ///
    /// # Errors
    /// When a memory limit derived from the container's (`limits.memory_limit = "auto"`) is
    /// under 32 MiB or not above `limits.memory_spike_limit`; a configured limit is checked
    /// when the configuration is loaded.
    pub fn for_app(app: &crate::app::App) -> Result<Arc<Self>, String> {
        let l = &app.config.limits;
        let (max_requests, max_bytes) = (
            l.max_concurrent_ingest_requests,
            l.max_inflight_ingest_bytes.as_usize(),
        );
        let memory = MemoryGuard::from_config(l)?;
        let metrics = app.telemetry.admission_metrics(max_requests, max_bytes);
        app.telemetry.memory_limits(memory.as_ref());
        Ok(Arc::new(
            Self::new(max_requests, max_bytes, Some(metrics)).with_memory(memory),
        ))
    }

    fn memory_full(&self) -> bool {
        self.memory.as_ref().is_some_and(MemoryGuard::over)
    }

    /// A permit for one request arriving on `listener`, or the request is shed (and counted).
    pub fn try_admit(self: &Arc<Self>, listener: &'static str) -> Result<Permit, ShedReason> {
        if self.memory_full() {
            return Err(self.shed(listener, ShedReason::Memory));
        }
        let taken = self
            .requests
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_requests).then_some(n + 1)
            });
        match taken {
            Ok(n) => {
                self.publish_requests(n + 1);
                Ok(Permit {
                    admission: self.clone(),
                    listener,
                    reserved: AtomicUsize::new(0),
                })
            }
            Err(_) => Err(self.shed(listener, ShedReason::ConcurrentRequests)),
        }
    }

    /// Requests holding a permit and bytes reserved, now.
    pub fn in_flight(&self) -> (usize, usize) {
        (
            self.requests.load(Ordering::Acquire),
            self.bytes.load(Ordering::Acquire),
        )
    }

    fn shed(&self, listener: &str, reason: ShedReason) -> ShedReason {
        if let Some(m) = &self.metrics {
            m.shed.with_label_values(&[listener, reason.as_str()]).inc();
        }
        reason
    }

    fn publish_requests(&self, n: usize) {
        if let Some(m) = &self.metrics {
            m.requests.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    fn publish_bytes(&self, n: usize) {
        if let Some(m) = &self.metrics {
            m.bytes.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

/// One admitted request. Dropping it gives back its slot and every byte it reserved.
pub struct Permit {
    admission: Arc<Admission>,
    listener: &'static str,
    reserved: AtomicUsize,
}

impl Permit {
    /// Reserves `n` more bytes for this request, or sheds it (and counts that) when they would
    /// pass the global bound.
    pub fn reserve(&self, n: usize) -> Result<(), ShedReason> {
        if n == 0 {
            return Ok(());
        }
        let a = &self.admission;
        if a.memory_full() {
            return Err(a.shed(self.listener, ShedReason::Memory));
        }
        let taken = a
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(n).filter(|&total| total <= a.max_bytes)
            });
        match taken {
            Ok(held) => {
                self.reserved.fetch_add(n, Ordering::AcqRel);
                a.publish_bytes(held + n);
                Ok(())
            }
            Err(_) => Err(a.shed(self.listener, ShedReason::InflightBytes)),
        }
    }

    /// Bytes this request holds.
    pub fn reserved(&self) -> usize {
        self.reserved.load(Ordering::Acquire)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let a = &self.admission;
        let reserved = *self.reserved.get_mut();
        if reserved > 0 {
            let before = a.bytes.fetch_sub(reserved, Ordering::AcqRel);
            a.publish_bytes(before - reserved);
        }
        let before = a.requests.fetch_sub(1, Ordering::AcqRel);
        a.publish_requests(before - 1);
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

/// `google.rpc.Status` with its details, the payload of `grpc-status-details-bin`.
#[derive(Clone, PartialEq, Message)]
struct StatusWithDetails {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

/// `RESOURCE_EXHAUSTED` for a shed request, with a `google.rpc.RetryInfo` detail asking the
/// client to wait [`RETRY_AFTER_SECS`], as the OTLP specification describes.
pub fn grpc_status(reason: ShedReason) -> Status {
    let message = reason.message();
    let retry = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: RETRY_AFTER_SECS as i64,
            nanos: 0,
        }),
    };
    let details = StatusWithDetails {
        code: Code::ResourceExhausted as i32,
        message: message.clone(),
        details: vec![ProtoAny {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: retry.encode_to_vec(),
        }],
    };
    Status::with_details(
        Code::ResourceExhausted,
        message,
        Bytes::from(details.encode_to_vec()),
    )
}

type GrpcRequest = tonic::codegen::http::Request<tonic::body::Body>;
type GrpcResponse = tonic::codegen::http::Response<tonic::body::Body>;

/// A gRPC service behind admission control: a request gets a [`Permit`] before its message is
/// read, its body's bytes are reserved as they arrive, and the permit travels in the request's
/// extensions so the handler can reserve the decoded message and hold the slot until it is done.
#[derive(Clone)]
pub struct Admitted<S> {
    inner: S,
    admission: Arc<Admission>,
    listener: &'static str,
}

impl<S> Admitted<S> {
    /// Wraps `inner`; requests arrive on `listener`.
    pub fn new(inner: S, admission: Arc<Admission>, listener: &'static str) -> Self {
        Self {
            inner,
            admission,
            listener,
        }
    }
}

impl<S: NamedService> NamedService for Admitted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<GrpcRequest> for Admitted<S>
where
    S: Service<GrpcRequest, Response = GrpcResponse, Error = Infallible>,
{
    type Response = GrpcResponse;
    type Error = Infallible;
    type Future = Either<Ready<Result<GrpcResponse, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: GrpcRequest) -> Self::Future {
        let permit = match self.admission.try_admit(self.listener) {
            Ok(p) => Arc::new(p),
            Err(reason) => return Either::Left(ready(Ok(grpc_status(reason).into_http()))),
        };
        let (mut parts, body) = req.into_parts();
        let body_permit = permit.clone();
        let mut shed = false;
        let frames = http_body_util::BodyStream::new(body).map(move |frame| {
            let frame = frame?;
            if let Some(data) = frame.data_ref() {
                // Counted once: a stream that already failed keeps failing without counting.
                if shed {
                    return Err(grpc_status(ShedReason::InflightBytes));
                }
                if let Err(reason) = body_permit.reserve(data.len()) {
                    shed = true;
                    return Err(grpc_status(reason));
                }
            }
            Ok(frame)
        });
        parts.extensions.insert(permit);
        let req = GrpcRequest::from_parts(
            parts,
            tonic::body::Body::new(http_body_util::StreamBody::new(frames)),
        );
        Either::Right(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(requests: usize, bytes: usize) -> (Arc<Admission>, IntCounterVec) {
        let shed = IntCounterVec::new(
            prometheus::Opts::new("shed_total", "test"),
            &["listener", "reason"],
        )
        .unwrap();
        let metrics = AdmissionMetrics {
            shed: shed.clone(),
            requests: IntGauge::new("requests", "test").unwrap(),
            bytes: IntGauge::new("bytes", "test").unwrap(),
        };
        (
            Arc::new(Admission::new(requests, bytes, Some(metrics))),
            shed,
        )
    }

    fn shed_count(shed: &IntCounterVec, reason: ShedReason) -> u64 {
        shed.with_label_values(&["http", reason.as_str()]).get()
    }

    #[test]
    fn requests_past_the_limit_are_shed_until_a_permit_is_dropped() {
        let (a, shed) = admission(2, 1000);
        let p1 = a.try_admit("http").unwrap();
        let p2 = a.try_admit("http").unwrap();
        assert_eq!(
            a.try_admit("http").err(),
            Some(ShedReason::ConcurrentRequests)
        );
        assert_eq!(
            a.try_admit("http").err(),
            Some(ShedReason::ConcurrentRequests)
        );
        assert_eq!(shed_count(&shed, ShedReason::ConcurrentRequests), 2);
        assert_eq!(a.in_flight(), (2, 0));
        drop(p1);
        assert_eq!(a.in_flight(), (1, 0));
        let p3 = a.try_admit("http").unwrap();
        assert_eq!(a.in_flight(), (2, 0));
        drop((p2, p3));
        assert_eq!(a.in_flight(), (0, 0));
        assert_eq!(a.metrics.as_ref().unwrap().requests.get(), 0);
    }

    #[test]
    fn bytes_are_bounded_over_all_permits_and_given_back_on_drop() {
        let (a, shed) = admission(10, 1000);
        let p1 = a.try_admit("http").unwrap();
        let p2 = a.try_admit("http").unwrap();
        p1.reserve(600).unwrap();
        p2.reserve(400).unwrap();
        assert_eq!(a.in_flight(), (2, 1000));
        assert_eq!(a.metrics.as_ref().unwrap().bytes.get(), 1000);
        // Full: even one more byte is refused, and nothing is taken by the refusal.
        assert_eq!(p2.reserve(1), Err(ShedReason::InflightBytes));
        assert_eq!(shed_count(&shed, ShedReason::InflightBytes), 1);
        assert_eq!(a.in_flight(), (2, 1000));
        assert_eq!(p2.reserved(), 400);
        p2.reserve(0).unwrap();
        drop(p1);
        assert_eq!(a.in_flight(), (1, 400));
        p2.reserve(600).unwrap();
        assert_eq!(p2.reserved(), 1000);
        // A reservation that overflows usize is refused, not wrapped.
        assert_eq!(p2.reserve(usize::MAX), Err(ShedReason::InflightBytes));
        drop(p2);
        assert_eq!(a.in_flight(), (0, 0));
        assert_eq!(a.metrics.as_ref().unwrap().bytes.get(), 0);
    }

    #[test]
    fn concurrent_admission_never_passes_the_limits() {
        let (a, shed) = admission(4, 4000);
        let admitted = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..2000 {
                        if let Ok(p) = a.try_admit("http") {
                            if p.reserve(1500).is_ok() {
                                let (requests, bytes) = a.in_flight();
                                assert!(requests <= 4 && bytes <= 4000, "{requests} {bytes}");
                                peak.fetch_max(requests, Ordering::Relaxed);
                            }
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(a.in_flight(), (0, 0));
        let shed_total = shed_count(&shed, ShedReason::ConcurrentRequests);
        assert_eq!(
            admitted.load(Ordering::Relaxed) as u64 + shed_total,
            8 * 2000
        );
        assert!(peak.load(Ordering::Relaxed) >= 1);
    }

    #[test]
    fn shed_grpc_status_carries_a_retry_delay() {
        let status = grpc_status(ShedReason::ConcurrentRequests);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(
            status
                .message()
                .contains("limits.max_concurrent_ingest_requests"),
            "{}",
            status.message()
        );
        let details = StatusWithDetails::decode(status.details()).unwrap();
        assert_eq!(details.code, 8);
        assert_eq!(
            details.details[0].type_url,
            "type.googleapis.com/google.rpc.RetryInfo"
        );
        let retry = RetryInfo::decode(details.details[0].value.as_slice()).unwrap();
        assert_eq!(retry.retry_delay.unwrap().seconds, 1);
    }
}
