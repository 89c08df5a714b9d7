//! OTLP logs over protobuf (gRPC and HTTP): decode, translate, mine templates, buffer, read back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use presage_forecaster::telemetry::Protocol;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = ExportLogsServiceRequest::decode(data) else {
        return;
    };
    let app = presage_fuzz::forecaster();
    app.ingest_otlp_logs(Protocol::OtlpGrpc, &req);
    app.ingest_otlp_logs(Protocol::OtlpHttp, &req);
    presage_fuzz::after_write(&app);
});
