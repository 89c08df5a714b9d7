//! Bearer-token authentication (`[auth]`) for the three listeners.
//!
//! Tokens are kept only as SHA-256 digests, and a presented token is compared by its digest in
//! constant time against every configured one, so neither the comparison's timing nor a memory
//! dump tells a token. Ingest tokens guard remote_write, OTLP/HTTP and OTLP/gRPC; API tokens guard
//! the rest of the HTTP listener except the open paths (health, readiness, `/metrics` and the
//! web UI's page and assets). A kind without configured tokens is open.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use presage_config::{AuthConfig, TokenKind};
use sha2::{Digest, Sha256};

use crate::api::ApiError;
use crate::app::App;

/// The `listener` label of the main HTTP listener.
pub const LISTENER_HTTP: &str = "http";
/// The `listener` label of the OTLP/HTTP listener.
pub const LISTENER_OTLP_HTTP: &str = "otlp_http";
/// The `listener` label of the OTLP/gRPC listener.
pub const LISTENER_OTLP_GRPC: &str = "otlp_grpc";

type TokenDigest = [u8; 32];

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No `Authorization` header (or metadata).
    Missing,
    /// A credential that is not one of the configured tokens of the kind, or not a bearer token.
    Invalid,
}

impl Failure {
    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Invalid => "invalid",
        }
    }

    fn message(self, kind: TokenKind) -> String {
        let what = match kind {
            TokenKind::Ingest => "an ingest token (auth.ingest_token_file)",
            TokenKind::Api => "an API token (auth.api_token_file)",
        };
        match self {
            Failure::Missing => {
                format!("authentication required: send `Authorization: Bearer <token>` with {what}")
            }
            Failure::Invalid => format!("invalid bearer token: this endpoint needs {what}"),
        }
    }
}

/// The configured tokens, as digests. `None` for a kind means it is not authenticated.
#[derive(Default)]
pub struct Auth {
    ingest: Option<Vec<TokenDigest>>,
    api: Option<Vec<TokenDigest>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("ingest_tokens", &self.ingest.as_ref().map(Vec::len))
            .field("api_tokens", &self.api.as_ref().map(Vec::len))
            .finish()
    }
}

fn digest(token: &[u8]) -> TokenDigest {
    Sha256::digest(token).into()
}

/// Equality of two digests whose time does not depend on where they differ.
fn digests_equal(a: &TokenDigest, b: &TokenDigest) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The token of an `Authorization: Bearer <token>` value; `None` for any other scheme.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = text.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token.as_bytes())
}

impl Auth {
    /// Reads the configured tokens. The error names the key and the problem, never a token.
    pub fn from_config(config: &AuthConfig) -> Result<Self, String> {
        let read = |kind: TokenKind| -> Result<Option<Vec<TokenDigest>>, String> {
            if !config.requires(kind) {
                return Ok(None);
            }
            let tokens = config
                .read_tokens(kind)
                .map_err(|e| format!("auth.{}_token_*: {e}", kind.as_str()))?;
            Ok(Some(tokens.iter().map(|t| digest(t.as_bytes())).collect()))
        };
        Ok(Self {
            ingest: read(TokenKind::Ingest)?,
            api: read(TokenKind::Api)?,
        })
    }

    /// An `Auth` from tokens given directly (for tests and embedders); empty lists leave a kind
    /// open.
    pub fn from_tokens(ingest: &[&str], api: &[&str]) -> Self {
        let digests = |tokens: &[&str]| {
            (!tokens.is_empty()).then(|| tokens.iter().map(|t| digest(t.as_bytes())).collect())
        };
        Self {
            ingest: digests(ingest),
            api: digests(api),
        }
    }

    /// Whether requests of `kind` need a token.
    pub fn requires(&self, kind: TokenKind) -> bool {
        self.digests(kind).is_some()
    }

    fn digests(&self, kind: TokenKind) -> Option<&[TokenDigest]> {
        match kind {
            TokenKind::Ingest => self.ingest.as_deref(),
            TokenKind::Api => self.api.as_deref(),
        }
    }

    /// Checks the value of the `Authorization` header (or gRPC metadata) for `kind`.
    pub fn check(&self, kind: TokenKind, authorization: Option<&[u8]>) -> Result<(), Failure> {
        let Some(allowed) = self.digests(kind) else {
            return Ok(());
        };
        let value = authorization.ok_or(Failure::Missing)?;
        let token = bearer_token(value).ok_or(Failure::Invalid)?;
        let presented = digest(token);
        // Every configured token is compared, whichever matches.
        let matched = allowed
            .iter()
            .fold(false, |acc, d| acc | digests_equal(&presented, d));
        if matched {
            Ok(())
        } else {
            Err(Failure::Invalid)
        }
    }
}

/// Which token a path of the main HTTP listener needs: `None` for the open paths.
pub fn http_path_kind(path: &str) -> Option<TokenKind> {
    match path {
        "/api/v1/write" => Some(TokenKind::Ingest),
        "/" | "/metrics" | "/-/healthy" | "/-/ready" => None,
        p if p.starts_with("/ui/") => None,
        // Everything else, unknown paths included, is the API's.
        _ => Some(TokenKind::Api),
    }
}

/// The 401 answer: Prometheus' error envelope and a `WWW-Authenticate: Bearer` challenge.
fn unauthorized(kind: TokenKind, failure: Failure) -> Response {
    let mut response = ApiError {
        status: StatusCode::UNAUTHORIZED,
        kind: "unauthorized",
        message: failure.message(kind),
    }
    .into_response();
    let challenge = match failure {
        Failure::Missing => "Bearer realm=\"presage\"",
        Failure::Invalid => "Bearer realm=\"presage\", error=\"invalid_token\"",
    };
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// Guards every route of `router` (a listener's whole router, fallback included): `kind_of`
/// says which token a path needs, `None` leaving it open. Failures are answered with 401 and
/// counted under `listener`.
pub fn guard_http(
    router: Router,
    auth: Arc<Auth>,
    app: Arc<App>,
    listener: &'static str,
    kind_of: fn(&str) -> Option<TokenKind>,
) -> Router {
    if !auth.requires(TokenKind::Ingest) && !auth.requires(TokenKind::Api) {
        return router;
    }
    router.layer(middleware::from_fn(move |req: Request, next: Next| {
        let auth = auth.clone();
        let app = app.clone();
        async move {
            let Some(kind) = kind_of(req.uri().path()) else {
                return next.run(req).await;
            };
            let value = req
                .headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            match auth.check(kind, value) {
                Ok(()) => next.run(req).await,
                Err(failure) => {
                    app.telemetry
                        .record_auth_failure(listener, failure.as_str());
                    tracing::debug!(
                        listener,
                        path = req.uri().path(),
                        reason = failure.as_str(),
                        "request refused: bearer token"
                    );
                    unauthorized(kind, failure)
                }
            }
        }
    }))
}

/// Every path of the OTLP/HTTP listener needs an ingest token.
pub fn otlp_http_path_kind(_path: &str) -> Option<TokenKind> {
    Some(TokenKind::Ingest)
}

/// The OTLP/gRPC interceptor: every call needs an ingest token, else `UNAUTHENTICATED`.
#[derive(Clone)]
pub struct GrpcAuth {
    auth: Arc<Auth>,
    app: Arc<App>,
}

impl GrpcAuth {
    /// An interceptor checking calls against `auth`, counting failures in `app`'s telemetry.
    pub fn new(auth: Arc<Auth>, app: Arc<App>) -> Self {
        Self { auth, app }
    }
}

impl tonic::service::Interceptor for GrpcAuth {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let value = req.metadata().get("authorization").map(|v| v.as_bytes());
        match self.auth.check(TokenKind::Ingest, value) {
            Ok(()) => Ok(req),
            Err(failure) => {
                self.app
                    .telemetry
                    .record_auth_failure(LISTENER_OTLP_GRPC, failure.as_str());
                tracing::debug!(
                    listener = LISTENER_OTLP_GRPC,
                    reason = failure.as_str(),
                    "call refused: bearer token"
                );
                Err(tonic::Status::unauthenticated(
                    failure.message(TokenKind::Ingest),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INGEST: &str = "ingest-token-0123456789";
    const API: &str = "api-token-0123456789abc";

    fn header(token: &str) -> Vec<u8> {
        format!("Bearer {token}").into_bytes()
    }

    #[test]
    fn tokens_open_only_their_own_kind() {
        let auth = Auth::from_tokens(&[INGEST, "ingest-token-rotated-999"], &[API]);
        let ingest = header(INGEST);
        let api = header(API);
        assert_eq!(auth.check(TokenKind::Ingest, Some(&ingest)), Ok(()));
        assert_eq!(
            auth.check(TokenKind::Ingest, Some(&header("ingest-token-rotated-999"))),
            Ok(())
        );
        assert_eq!(auth.check(TokenKind::Api, Some(&api)), Ok(()));
        assert_eq!(
            auth.check(TokenKind::Api, Some(&ingest)),
            Err(Failure::Invalid)
        );
        assert_eq!(
            auth.check(TokenKind::Ingest, Some(&api)),
            Err(Failure::Invalid)
        );
        assert_eq!(auth.check(TokenKind::Api, None), Err(Failure::Missing));
        // A prefix, a longer token, another scheme, an empty bearer: all invalid.
        for bad in [
            header(&INGEST[..10]),
            header(&format!("{INGEST}x")),
            format!("Basic {INGEST}").into_bytes(),
            b"Bearer ".to_vec(),
            INGEST.as_bytes().to_vec(),
        ] {
            assert_eq!(
                auth.check(TokenKind::Ingest, Some(&bad)),
                Err(Failure::Invalid),
                "{}",
                String::from_utf8_lossy(&bad)
            );
        }
        // The scheme is case-insensitive and surrounding blanks are ignored.
        assert_eq!(
            auth.check(
                TokenKind::Ingest,
                Some(format!("bearer  {INGEST} ").as_bytes())
            ),
            Ok(())
        );
    }

    #[test]
    fn the_same_token_may_serve_both_kinds_and_unset_kinds_are_open() {
        let both = Auth::from_tokens(&[INGEST], &[INGEST]);
        assert_eq!(both.check(TokenKind::Api, Some(&header(INGEST))), Ok(()));
        assert_eq!(both.check(TokenKind::Ingest, Some(&header(INGEST))), Ok(()));

        let ingest_only = Auth::from_tokens(&[INGEST], &[]);
        assert!(ingest_only.requires(TokenKind::Ingest));
        assert!(!ingest_only.requires(TokenKind::Api));
        assert_eq!(ingest_only.check(TokenKind::Api, None), Ok(()));
        assert_eq!(
            ingest_only.check(TokenKind::Ingest, None),
            Err(Failure::Missing)
        );
        assert_eq!(Auth::default().check(TokenKind::Ingest, None), Ok(()));
    }

    #[test]
    fn debug_output_shows_counts_not_digests() {
        let text = format!("{:?}", Auth::from_tokens(&[INGEST], &[API, INGEST]));
        assert_eq!(text, "Auth { ingest_tokens: Some(1), api_tokens: Some(2) }");
    }

    #[test]
    fn digest_comparison_is_exact() {
        let a = digest(b"abc");
        let mut b = a;
        assert!(digests_equal(&a, &b));
        b[31] ^= 1;
        assert!(!digests_equal(&a, &b));
        b = a;
        b[0] ^= 0x80;
        assert!(!digests_equal(&a, &b));
    }

    #[test]
    fn open_and_guarded_paths() {
        assert_eq!(http_path_kind("/api/v1/write"), Some(TokenKind::Ingest));
        for open in ["/", "/metrics", "/-/healthy", "/-/ready", "/ui/app.js"] {
            assert_eq!(http_path_kind(open), None, "{open}");
        }
        for guarded in [
            "/api/v1/series",
            "/api/v1/status",
            "/api/v1/silences/x",
            "/api/v1/write/",
            "/unknown",
            "/-/reload",
            "//api/v1/series",
        ] {
            assert_eq!(http_path_kind(guarded), Some(TokenKind::Api), "{guarded}");
        }
    }
}
