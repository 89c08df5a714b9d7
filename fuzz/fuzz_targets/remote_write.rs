//! Prometheus remote_write bodies: snappy, protobuf, translation, store.
//!
//! The first byte chooses how the rest is used, so that mutations reach the protobuf decoder
//! and not only the snappy one: bit 0 clear, the rest is the HTTP body as sent (snappy block
//! format); bit 0 set, the rest is the protobuf `WriteRequest`, compressed here. Bit 1 writes
//! it as history (`presage backfill`'s `X-Presage-History`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let compressed;
    let body = if mode & 1 == 0 {
        rest
    } else {
        let Ok(c) = snap::raw::Encoder::new().compress_vec(rest) else {
            return;
        };
        compressed = c;
        &compressed
    };
    let history = mode & 2 != 0;
    let app = presage_fuzz::forecaster();
    if app.ingest_remote_write_as(body, history).is_err() {
        return;
    }
    // Sent again, as Prometheus does after a timeout.
    let _ = app.ingest_remote_write_as(body, history);
    presage_fuzz::after_write(&app);
});
