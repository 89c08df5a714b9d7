//! The agent's Prometheus text parser, its conversion to OTLP and the requests it sends, then
//! what the forecaster does with them: the whole path of a scraped sidecar metric.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use presage_forecaster::telemetry::Protocol;
use prost::Message;

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    // The agent refuses a body that is not UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let scrape_ns = presage_fuzz::NOW_MS as u64 * 1_000_000;
    let resource = pairs(&[
        ("service.name", "sidecar"),
        ("service.instance.id", "127.0.0.1:9100"),
    ]);
    // The default target settings, then configured labels, exposed timestamps ignored and
    // requests of a few points each.
    let (requests, _) =
        presage_agent::scrape_to_requests(text, &[], true, &resource, 2000, scrape_ns);
    let _ = presage_agent::scrape_to_requests(
        text,
        &pairs(&[("job", "override"), ("env", "fuzz")]),
        false,
        &resource,
        3,
        scrape_ns,
    );
    let app = presage_fuzz::forecaster();
    for _ in 0..2 {
        for req in &requests {
            // Over the wire, as the forecaster receives it.
            let wire = req.encode_to_vec();
            let Ok(req) = ExportMetricsServiceRequest::decode(wire.as_slice()) else {
                panic!("the agent sent a request that does not decode");
            };
            app.ingest_otlp_metrics(Protocol::OtlpGrpc, &req);
        }
    }
    presage_fuzz::after_write(&app);
});
