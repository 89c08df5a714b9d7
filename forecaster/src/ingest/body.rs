//! Reading request bodies within the configured size limits.

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};

use super::RejectReason;

/// A request refused before it was decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BodyError {
    /// Counter reason.
    pub(crate) reason: RejectReason,
    /// HTTP status.
    pub(crate) status: StatusCode,
    /// Message for the client.
    pub(crate) message: String,
}

impl BodyError {
    pub(crate) fn new(reason: RejectReason, message: impl Into<String>) -> Self {
        let status = match reason {
            RejectReason::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RejectReason::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self {
            reason,
            status,
            message: message.into(),
        }
    }
}

/// The media type of a request without parameters, lower-cased (`application/json`).
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

fn content_encoding(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty() && v != "identity")
}

/// Reads at most `max_body` bytes and, for `Content-Encoding: gzip` when `allow_gzip`, inflates
/// at most `max_decompressed` bytes. `allowed_encodings` lists other encodings the caller
/// decodes itself (remote_write's snappy).
pub(crate) async fn read(
    body: Body,
    headers: &HeaderMap,
    max_body: usize,
    max_decompressed: usize,
    allow_gzip: bool,
    allowed_encodings: &[&str],
) -> Result<Bytes, BodyError> {
    let encoding = content_encoding(headers);
    let gzip = match encoding.as_deref() {
        None => false,
        Some("gzip") if allow_gzip => true,
        Some(e) if allowed_encodings.contains(&e) => false,
        Some(e) => {
            return Err(BodyError::new(
                RejectReason::UnsupportedMediaType,
                format!("unsupported Content-Encoding `{e}`"),
            ));
        }
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        BodyError::new(
            RejectReason::BodyTooLarge,
            format!(
                "request body is larger than the limit of {max_body} bytes (limits.max_request_body)"
            ),
        )
    };
    if declared.is_some_and(|n| n > max_body as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, max_body).await.map_err(|e| {
        // The only error besides the limit is a broken connection.
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            too_large()
        } else {
            BodyError::new(
                RejectReason::MalformedBody,
                format!("reading the body failed: {e}"),
            )
        }
    })?;
    if !gzip {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(max_decompressed));
    let mut decoder = flate2::read::GzDecoder::new(&bytes[..]).take(max_decompressed as u64 + 1);
    decoder.read_to_end(&mut out).map_err(|e| {
        BodyError::new(
            RejectReason::MalformedBody,
            format!("invalid gzip body: {e}"),
        )
    })?;
    if out.len() > max_decompressed {
        return Err(BodyError::new(
            RejectReason::BodyTooLarge,
            format!(
                "decompressed body is larger than the limit of {max_decompressed} bytes (limits.max_decompressed_body)"
            ),
        ));
    }
    Ok(Bytes::from(out))
}
