//! `GET /api/v1/log-patterns`: the log templates mined per service, with their counts, sample
//! lines and the anomaly state of their line count series.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde::Serialize;

use super::{ApiError, limit, param, params, success};
use crate::app::App;
use crate::detect::StepScore;
use crate::logpatterns::LINES_METRIC;
use crate::model::logpattern::TemplateInfo;
use crate::store::Selector;

/// Templates one answer lists unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 100;

/// The latest scored step of a template's busiest-scoring count series.
#[derive(Debug, Serialize)]
struct PatternAnomaly {
    /// The severity label of the series that scored it.
    severity: String,
    /// The series' labels beyond `__name__`, `service`, `template_id` and `severity`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    placement: Vec<(String, String)>,
    /// The step and its score.
    #[serde(flatten)]
    step: StepScore,
}

#[derive(Debug, Serialize)]
struct Pattern {
    #[serde(flatten)]
    info: TemplateInfo,
    /// `null` until a count series of the template has a scored step.
    anomaly: Option<PatternAnomaly>,
}

/// `GET /api/v1/log-patterns[?service=…&limit=…]`: templates, the busiest first.
pub(super) async fn log_patterns(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = params(raw)?;
    let limit = limit(&params, DEFAULT_LIMIT)?;
    let service = param(&params, "service").filter(|s| !s.is_empty());
    let templates = app.log_patterns.templates(service, limit);
    let mut scores: HashMap<String, PatternAnomaly> = HashMap::new();
    if !templates.is_empty() {
        let sel = Selector::parse(LINES_METRIC).map_err(ApiError::internal)?;
        for (labels, step) in app.store.latest_scores(&[sel], app.store.max_series()) {
            let get = |name: &str| {
                labels
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            if service.is_some_and(|s| get("service") != s) {
                continue;
            }
            let id = get("template_id");
            let better = scores.get(&id).is_none_or(|a| step.score > a.step.score);
            if better {
                let placement = labels
                    .iter()
                    .filter(|(n, _)| {
                        !matches!(
                            n.as_str(),
                            "__name__" | "service" | "template_id" | "severity"
                        )
                    })
                    .cloned()
                    .collect();
                let severity = get("severity");
                scores.insert(
                    id,
                    PatternAnomaly {
                        severity,
                        placement,
                        step,
                    },
                );
            }
        }
    }
    let out: Vec<Pattern> = templates
        .into_iter()
        .map(|info| {
            let anomaly = scores.remove(&info.id.to_string());
            Pattern { info, anomaly }
        })
        .collect();
    Ok(success(out))
}
