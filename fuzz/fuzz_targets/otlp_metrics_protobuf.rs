//! OTLP metrics over protobuf (gRPC and HTTP): decode, translate, store, fit, read back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use presage_forecaster::telemetry::Protocol;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = ExportMetricsServiceRequest::decode(data) else {
        return;
    };
    let app = presage_fuzz::forecaster();
    // Twice, as a retrying client does: the second export meets the series and the cumulative
    // histogram state the first one left.
    app.ingest_otlp_metrics(Protocol::OtlpGrpc, &req);
    app.ingest_otlp_metrics(Protocol::OtlpHttp, &req);
    presage_fuzz::after_write(&app);
});
