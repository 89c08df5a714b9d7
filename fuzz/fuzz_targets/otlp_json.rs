//! OTLP/JSON bodies (`POST /v1/metrics` and `/v1/logs` with `application/json`): both decoders
//! see every input; what decodes is ingested as the HTTP front end does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use presage_forecaster::ingest::otlp::{decode_logs_json, decode_metrics_json};
use presage_forecaster::telemetry::Protocol;

fuzz_target!(|data: &[u8]| {
    let metrics = decode_metrics_json(data);
    let logs = decode_logs_json(data);
    if metrics.is_err() && logs.is_err() {
        return;
    }
    let app = presage_fuzz::forecaster();
    if let Ok(req) = &metrics {
        app.ingest_otlp_metrics(Protocol::OtlpHttp, req);
        app.ingest_otlp_metrics(Protocol::OtlpHttp, req);
    }
    if let Ok(req) = &logs {
        app.ingest_otlp_logs(Protocol::OtlpHttp, req);
    }
    presage_fuzz::after_write(&app);
});
