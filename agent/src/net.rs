//! Connections for everything the agent talks to: plain TCP or TLS (rustls with the ring
//! provider, system roots plus an optional CA file), used by tonic for OTLP/gRPC and by a small
//! HTTP/1.1 client (hyper's connection API) for OTLP/HTTP and scrapes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HOST};
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A plain or TLS connection.
pub(crate) enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// TLS client settings, built only when an `https://` URL is configured.
#[cfg(feature = "tls")]
pub(crate) type TlsConfig = Arc<tokio_rustls::rustls::ClientConfig>;
/// TLS is compiled out: `https://` URLs are refused when the configuration is loaded.
#[cfg(not(feature = "tls"))]
pub(crate) type TlsConfig = Arc<()>;

/// A client certificate file and its private key file (PEM), for mutual TLS.
pub(crate) type ClientCertificate<'a> = (&'a std::path::Path, &'a std::path::Path);

/// Builds a TLS client configuration trusting the system's roots and the PEM certificates in
/// `ca_file`, presenting `client` when the server asks for a certificate, offering `alpn`
/// protocols.
#[cfg(feature = "tls")]
pub(crate) fn tls_config(
    ca_file: Option<&std::path::Path>,
    client: Option<ClientCertificate<'_>>,
    alpn: &[&[u8]],
) -> Result<TlsConfig, String> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
        let mut n = 0;
        for cert in certs {
            let cert = cert.map_err(|e| format!("invalid PEM in {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("invalid CA certificate in {}: {e}", path.display()))?;
            n += 1;
        }
        if n == 0 {
            return Err(format!("no certificate in CA file {}", path.display()));
        }
    }
    if roots.is_empty() {
        return Err("no trusted CA certificates: the system store is empty and agent.tls_ca_file is not set".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut cfg = match client {
        Some((cert_file, key_file)) => {
            let certs = presage_config::tls::read_certificates(cert_file)?;
            let key = presage_config::tls::read_private_key(key_file)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("unusable client certificate {}: {e}", cert_file.display()))?
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// Without the `tls` feature there is no TLS.
#[cfg(not(feature = "tls"))]
pub(crate) fn tls_config(
    _ca_file: Option<&std::path::Path>,
    _client: Option<ClientCertificate<'_>>,
    _alpn: &[&[u8]],
) -> Result<TlsConfig, String> {
    Err("this presage-agent was built without the `tls` feature; use an http:// URL".into())
}

/// Opens connections to `http://` and `https://` URIs.
#[derive(Clone)]
pub(crate) struct Connector {
    tls: Option<TlsConfig>,
    connect_timeout: Duration,
}

impl Connector {
    /// A connector; `tls` is required for `https://` URIs.
    pub(crate) fn new(tls: Option<TlsConfig>, connect_timeout: Duration) -> Self {
        Self {
            tls,
            connect_timeout,
        }
    }

    /// Connects to the URI's host and port.
    pub(crate) async fn connect(&self, uri: &Uri) -> io::Result<Stream> {
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("no host in {uri}"))
        })?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect((bare, port)))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connecting to {host}:{port} timed out"),
                )
            })??;
        let _ = tcp.set_nodelay(true);
        if !https {
            return Ok(Stream::Plain(tcp));
        }
        #[cfg(feature = "tls")]
        {
            let Some(cfg) = &self.tls else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "TLS is not configured",
                ));
            };
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(bare.to_string())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                .connect(name, tcp)
                .await?;
            Ok(Stream::Tls(Box::new(tls)))
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = &self.tls;
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "built without TLS support",
            ))
        }
    }
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Stream>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(&uri).await.map(TokioIo::new) })
    }
}

/// A response read whole.
#[derive(Debug)]
pub(crate) struct Response {
    /// Status code.
    pub(crate) status: StatusCode,
    /// Headers.
    pub(crate) headers: HeaderMap,
    /// Body.
    pub(crate) body: Bytes,
}

/// A minimal HTTP/1.1 client that keeps one connection alive.
pub(crate) struct HttpClient {
    connector: Connector,
    conn: Option<(String, SendRequest<Full<Bytes>>)>,
    max_body: usize,
}

impl HttpClient {
    /// A client reading bodies of at most `max_body` bytes.
    pub(crate) fn new(connector: Connector, max_body: usize) -> Self {
        Self {
            connector,
            conn: None,
            max_body,
        }
    }

    /// Sends `req` (absolute URI) and reads the whole response, all within `timeout`.
    pub(crate) async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Response, String> {
        match tokio::time::timeout(timeout, self.send_inner(req)).await {
            Ok(r) => r,
            Err(_) => {
                self.conn = None;
                Err(format!(
                    "no response within {}",
                    humantime::format_duration(timeout)
                ))
            }
        }
    }

    async fn send_inner(&mut self, req: Request<Full<Bytes>>) -> Result<Response, String> {
        let uri = req.uri().clone();
        let authority = uri
            .authority()
            .map(|a| a.to_string())
            .ok_or_else(|| format!("no host in {uri}"))?;
        let (parts, body) = req.into_parts();
        let method = parts.method;
        let path = uri
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
        let mut headers = parts.headers;
        headers.insert(
            HOST,
            authority
                .parse()
                .map_err(|e| format!("invalid host {authority}: {e}"))?,
        );
        let build = || {
            let mut req = Request::new(body.clone());
            *req.method_mut() = method.clone();
            *req.uri_mut() = path.clone();
            *req.headers_mut() = headers.clone();
            req
        };
        let reused = matches!(&self.conn, Some((a, s)) if *a == authority && !s.is_closed());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut sender = match self.conn.take() {
                Some((a, s)) if a == authority && !s.is_closed() && attempt == 1 => s,
                _ => self.open(&uri).await?,
            };
            let result = async {
                sender.ready().await.map_err(|e| e.to_string())?;
                sender
                    .send_request(build())
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            match result {
                Ok(res) => {
                    let close = res
                        .headers()
                        .get(CONNECTION)
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                    let (head, body) = res.into_parts();
                    let body = Limited::new(body, self.max_body)
                        .collect()
                        .await
                        .map_err(|e| format!("reading the response body: {e}"))?
                        .to_bytes();
                    if !close {
                        self.conn = Some((authority, sender));
                    }
                    return Ok(Response {
                        status: head.status,
                        headers: head.headers,
                        body,
                    });
                }
                // A kept-alive connection the server closed meanwhile: try once on a new one.
                Err(_) if reused && attempt == 1 => continue,
                Err(e) => return Err(e),
            }
        }
    }

    async fn open(&self, uri: &Uri) -> Result<SendRequest<Full<Bytes>>, String> {
        let io = self
            .connector
            .connect(uri)
            .await
            .map_err(|e| format!("cannot connect to {uri}: {e}"))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP handshake with {uri} failed: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    /// An HTTPS server of our own with a certificate for `localhost`, answering one request.
    async fn https_server() -> (u16, String) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let pem = certified.cert.pem();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                let _ = tls.shutdown().await;
            }
        });
        (port, pem)
    }

    #[tokio::test]
    async fn https_with_a_private_ca_file() {
        let (port, pem) = https_server().await;
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, pem).unwrap();
        let uri: Uri = format!("https://localhost:{port}/metrics").parse().unwrap();
        let get = |tls: TlsConfig| {
            let uri = uri.clone();
            async move {
                let mut client =
                    HttpClient::new(Connector::new(Some(tls), Duration::from_secs(5)), 1024);
                let mut req = Request::new(Full::new(Bytes::new()));
                *req.uri_mut() = uri;
                client.send(req, Duration::from_secs(5)).await
            }
        };
        let trusted = tls_config(Some(&ca), None, &[b"http/1.1"]).unwrap();
        let res = get(trusted).await.unwrap();
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(&res.body[..], b"ok");
        // The system roots alone do not trust a private CA.
        if let Ok(system_only) = tls_config(None, None, &[b"http/1.1"]) {
            let err = get(system_only).await.unwrap_err();
            assert!(
                err.contains("certificate") || err.contains("Unknown"),
                "{err}"
            );
        }
    }

    #[test]
    fn bad_ca_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = tls_config(Some(&missing), None, &[]).unwrap_err();
        assert!(err.contains("missing.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = tls_config(Some(&empty), None, &[]).unwrap_err();
        assert!(err.contains("no certificate"), "{err}");
    }
}
