//! What the fuzz targets share: a forecaster set up the way the daemon sets itself up, and the
//! work the daemon does after a request has been decoded, so that a panic anywhere between the
//! wire and the stored series is found, not only in the decoders.

use std::sync::Arc;

use presage_config::ForecasterConfig;
use presage_forecaster::app::{App, Clock};
use presage_forecaster::store::Selector;

/// The forecaster's clock in every target: 2026-01-01T00:00:00Z, so that runs are reproducible.
pub const NOW_MS: i64 = 1_767_225_600_000;

/// Most model fits run per input: each costs milliseconds, and one input can queue many.
const MAX_FITS: usize = 4;

/// The history read back after a write: the default retention, 14 days.
const HISTORY_MS: i64 = 14 * 86_400_000;

/// A fresh forecaster on the default configuration with a fixed clock. `model.min_points` is
/// at its lowest allowed value so that short inputs already reach the model.
pub fn forecaster() -> Arc<App> {
    let mut config = ForecasterConfig::default();
    config.model.min_points = 8;
    App::new(config, Clock::Fixed(NOW_MS))
}

/// What happens after a write in the daemon, and what a reader then asks: the queued fits run
/// (a few), the store is read back through the API's selectors, and `/metrics` is rendered.
pub fn after_write(app: &App) {
    if let Some(mut fits) = app.take_fit_queue() {
        let mut ran = 0;
        while let Ok(job) = fits.try_recv() {
            if ran < MAX_FITS {
                app.run_fit(job);
                ran += 1;
            }
        }
    }
    if let Ok(all) = Selector::parse(r#"{__name__=~".+"}"#) {
        let _ = app.store.select(&all, 16);
        let _ = app.store.history(&all, NOW_MS - HISTORY_MS, NOW_MS, 16);
        let _ = app.logs.recent(Some(&all), 16);
    }
    let _ = app.logs.recent(None, 16);
    let _ = app.telemetry.render();
    let _ = app.render_model_metrics();
    let _ = app.log_patterns.render_metrics();
    app.maintain();
}

/// Splits a fuzz input into a text and a few control bytes (the last ones), so that one input
/// drives both the document and the options around it.
pub fn split_controls<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut controls = [0u8; N];
    let n = data.len().min(N);
    let (body, tail) = data.split_at(data.len() - n);
    controls[..n].copy_from_slice(tail);
    (controls, body)
}
