//! The web UI at `/`: plain HTML, CSS and JavaScript embedded in the binary, talking to the
//! JSON API. Clients that do not ask for HTML (curl, scripts) get the endpoint list instead.

use std::sync::LazyLock;

use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::ApiError;

const INDEX_HTML: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const APP_CSS: &str = include_str!("../ui/app.css");
const FAVICON_SVG: &str = include_str!("../ui/favicon.svg");

/// A digest of the assets: their URLs carry it (`?v=<tag>`), so a browser may keep them for good
/// and still never runs a script that does not belong to the page it loaded.
static TAG: LazyLock<String> = LazyLock::new(|| {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for asset in [APP_JS, APP_CSS, FAVICON_SVG] {
        h.update(asset.as_bytes());
    }
    format!("{:016x}", h.digest())
});

/// The page, with the version shown and the asset URLs tagged.
static INDEX: LazyLock<String> = LazyLock::new(|| {
    INDEX_HTML
        .replace("{{version}}", env!("CARGO_PKG_VERSION"))
        .replace("{{tag}}", &TAG)
});

/// What `/` answers when HTML is not asked for.
const API_LISTING: &str = concat!(
    "Presage ",
    env!("CARGO_PKG_VERSION"),
    " (open / in a browser for the web UI)\n\n",
    "GET  /api/v1/series?match[]=<selector>\n",
    "GET  /api/v1/forecast?series=<selector>[&start=..&end=..&horizon=6h&limit=..]\n",
    "GET  /api/v1/logs?match[]=<selector>[&limit=..]\n",
    "GET  /api/v1/log-patterns[?service=..&limit=..]\n",
    "GET  /api/v1/anomalies[?since=..&min_score=..&limit=..]\n",
    "GET  /api/v1/alerts\n",
    "GET|POST /api/v1/silences, GET|DELETE /api/v1/silences/<id>\n",
    "GET  /api/v1/status\n",
    "POST /api/v1/write        (Prometheus remote_write)\n",
    "GET  /metrics\n",
    "GET  /-/healthy, /-/ready\n",
);

/// The page, and assets asked for without the current tag, are revalidated on every load.
const NO_CACHE: &str = "no-cache";
/// Assets asked for with the current tag never change.
const ASSET_CACHE: &str = "public, max-age=31536000, immutable";

/// Only our own files, no inline code, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            let mut fields = part.split(';').map(str::trim);
            let media = fields.next().unwrap_or("");
            let refused = fields.any(|f| f.replace(' ', "") == "q=0");
            !refused
                && (media.eq_ignore_ascii_case("text/html") || media == "application/xhtml+xml")
        })
}

fn file(content_type: &'static str, cache: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the web UI for browsers, the endpoint list for everything else.
pub(super) async fn index(headers: HeaderMap) -> Response {
    let mut res = if wants_html(&headers) {
        let mut res = file("text/html; charset=utf-8", NO_CACHE, INDEX.as_str());
        res.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        res.headers_mut().insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        res
    } else {
        file("text/plain; charset=utf-8", NO_CACHE, API_LISTING)
    };
    res.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    res
}

/// `GET /ui/{file}`: the page's script, stylesheet and icon.
pub(super) async fn asset(
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let tagged = query.as_deref().is_some_and(|q| {
        q.split('&')
            .any(|p| p.strip_prefix("v=") == Some(TAG.as_str()))
    });
    let cache = if tagged { ASSET_CACHE } else { NO_CACHE };
    Ok(match name.as_str() {
        "app.js" => file("text/javascript; charset=utf-8", cache, APP_JS),
        "app.css" => file("text/css; charset=utf-8", cache, APP_CSS),
        "favicon.svg" => file("image/svg+xml", cache, FAVICON_SVG),
        _ => return Err(ApiError::not_found(format!("no UI file `{name}`"))),
    })
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use presage_config::ForecasterConfig;
    use tower::ServiceExt;

    use super::*;
    use crate::app::{App, Clock};

    async fn get(uri: &str, accept: Option<&str>) -> (StatusCode, HeaderMap, String) {
        let app = App::new(ForecasterConfig::default(), Clock::Fixed(0));
        let mut req = Request::get(uri);
        if let Some(accept) = accept {
            req = req.header(header::ACCEPT, accept);
        }
        let res = super::super::router(app)
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    fn header_of(headers: &HeaderMap, name: header::HeaderName) -> &str {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[tokio::test]
    async fn a_browser_gets_the_page_with_tagged_assets() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        let (status, headers, body) = get("/", Some(browser)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            header_of(&headers, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        assert_eq!(header_of(&headers, header::CACHE_CONTROL), "no-cache");
        assert!(header_of(&headers, header::CONTENT_SECURITY_POLICY).contains("script-src 'self'"));
        let tag = TAG.as_str();
        assert!(body.contains(&format!("/ui/app.js?v={tag}")), "{body}");
        assert!(body.contains(&format!("/ui/app.css?v={tag}")), "{body}");
        assert!(body.contains(env!("CARGO_PKG_VERSION")), "{body}");
        assert!(!body.contains("{{"), "an unreplaced placeholder: {body}");
    }

    #[tokio::test]
    async fn other_clients_get_the_endpoint_list() {
        for accept in [None, Some("*/*"), Some("text/html;q=0, text/plain")] {
            let (status, headers, body) = get("/", accept).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                header_of(&headers, header::CONTENT_TYPE),
                "text/plain; charset=utf-8",
                "{accept:?}"
            );
            assert_eq!(header_of(&headers, header::VARY), "Accept");
            assert!(body.contains("/api/v1/forecast"), "{body}");
        }
    }

    #[tokio::test]
    async fn assets_are_served_with_their_types() {
        for (path, content_type, marker) in [
            (
                "/ui/app.js",
                "text/javascript; charset=utf-8",
                "\"use strict\"",
            ),
            ("/ui/app.css", "text/css; charset=utf-8", ":root"),
            ("/ui/favicon.svg", "image/svg+xml", "<svg"),
        ] {
            let (status, headers, body) = get(&format!("{path}?v={}", *TAG), None).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(header_of(&headers, header::CONTENT_TYPE), content_type);
            assert_eq!(header_of(&headers, header::CACHE_CONTROL), ASSET_CACHE);
            assert_eq!(
                header_of(&headers, header::X_CONTENT_TYPE_OPTIONS),
                "nosniff"
            );
            assert!(body.contains(marker), "{path}");
            // Without the current tag (an old page, a typed URL) the answer is revalidated.
            for query in ["", "?v=0123456789abcdef"] {
                let (status, headers, _) = get(&format!("{path}{query}"), None).await;
                assert_eq!(status, StatusCode::OK, "{path}{query}");
                assert_eq!(header_of(&headers, header::CACHE_CONTROL), NO_CACHE);
            }
        }
    }

    #[tokio::test]
    async fn unknown_ui_files_are_404() {
        for path in ["/ui/nope.js", "/ui/..%2Fapi%2Fmod.rs", "/ui/"] {
            let (status, _, body) = get(path, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        }
    }
}
