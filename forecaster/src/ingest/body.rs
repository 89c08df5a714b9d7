//! Reading request bodies within the configured size limits, reserving their bytes on the
//! request's admission [`Permit`] as they arrive.

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;

use super::RejectReason;
use super::admission::{Permit, ShedReason};

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

/// Why a body was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The request is refused for good (size, encoding, broken body).
    Refused(BodyError),
    /// The ingest limits are reached: the client should retry later.
    Shed(ShedReason),
}

impl From<BodyError> for ReadError {
    fn from(e: BodyError) -> Self {
        Self::Refused(e)
    }
}

impl From<ShedReason> for ReadError {
    fn from(r: ShedReason) -> Self {
        Self::Shed(r)
    }
}

/// Size of the pieces a gzip body is inflated in, each reserved before it is kept.
const INFLATE_CHUNK: usize = 64 * 1024;

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
/// decodes itself (remote_write's snappy). Every byte kept is reserved on `permit` first: a
/// declared `Content-Length` at once, before anything is read.
pub(crate) async fn read(
    mut body: Body,
    headers: &HeaderMap,
    max_body: usize,
    max_decompressed: usize,
    allow_gzip: bool,
    allowed_encodings: &[&str],
    permit: &Permit,
) -> Result<Bytes, ReadError> {
    let encoding = content_encoding(headers);
    let gzip = match encoding.as_deref() {
        None => false,
        Some("gzip") if allow_gzip => true,
        Some(e) if allowed_encodings.contains(&e) => false,
        Some(e) => {
            return Err(BodyError::new(
                RejectReason::UnsupportedMediaType,
                format!("unsupported Content-Encoding `{e}`"),
            )
            .into());
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
    let declared = match declared {
        Some(n) if n > max_body as u64 => return Err(too_large().into()),
        Some(n) => usize::try_from(n).ok(),
        None => None,
    };
    if let Some(n) = declared {
        permit.reserve(n)?;
    }
    let bytes = read_frames(&mut body, max_body, declared, permit)
        .await
        .map_err(|e| match e {
            ReadError::Refused(e) if e.reason == RejectReason::BodyTooLarge => too_large().into(),
            other => other,
        })?;
    if !gzip {
        return Ok(bytes);
    }
    super::admission::run_blocking(|| inflate(&bytes, max_decompressed, permit))
}

/// The body's data frames, reserving bytes past the `reserved` ones as they arrive.
async fn read_frames(
    body: &mut Body,
    max_body: usize,
    reserved: Option<usize>,
    permit: &Permit,
) -> Result<Bytes, ReadError> {
    let mut reserved = reserved.unwrap_or(0);
    let mut first: Option<Bytes> = None;
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        // The only error is a broken connection (or a body longer than its Content-Length).
        let frame = frame.map_err(|e| {
            BodyError::new(
                RejectReason::MalformedBody,
                format!("reading the body failed: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let len = first.as_ref().map_or(0, Bytes::len) + buf.len() + data.len();
        if len > max_body {
            return Err(BodyError::new(RejectReason::BodyTooLarge, String::new()).into());
        }
        if len > reserved {
            permit.reserve(len - reserved)?;
            reserved = len;
        }
        // Most bodies arrive in one frame: kept without a copy.
        match first.take() {
            None if buf.is_empty() => first = Some(data),
            Some(f) => {
                buf.reserve(reserved.max(len) - buf.len());
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&data);
            }
            None => buf.extend_from_slice(&data),
        }
    }
    Ok(match first {
        Some(f) => f,
        None => Bytes::from(buf),
    })
}

/// Inflates a gzip body, at most `max_decompressed` bytes, reserving them as they come.
fn inflate(bytes: &[u8], max_decompressed: usize, permit: &Permit) -> Result<Bytes, ReadError> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; INFLATE_CHUNK];
    let mut decoder = flate2::read::GzDecoder::new(bytes).take(max_decompressed as u64 + 1);
    loop {
        let n = decoder.read(&mut chunk).map_err(|e| {
            BodyError::new(
                RejectReason::MalformedBody,
                format!("invalid gzip body: {e}"),
            )
        })?;
        if n == 0 {
            break;
        }
        if out.len() + n > max_decompressed {
            return Err(BodyError::new(
                RejectReason::BodyTooLarge,
                format!(
                    "decompressed body is larger than the limit of {max_decompressed} bytes (limits.max_decompressed_body)"
                ),
            )
            .into());
        }
        // Reserved as the vector's capacity grows, so the bound covers what is allocated.
        if out.len() + n > out.capacity() {
            let grown = (out.len() + n)
                .max(out.capacity().saturating_mul(2))
                .min(max_decompressed);
            permit.reserve(grown - out.capacity())?;
            out.reserve_exact(grown - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(Bytes::from(out))
}
