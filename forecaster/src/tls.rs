//! TLS on the listeners (`[tls]`): rustls server configurations, an accept loop that performs
//! handshakes off the serving path, and the reload of changed certificate files.
//!
//! Each listener's TCP sockets are accepted by a task of its own; every handshake runs in its
//! own task with a deadline, so a slow or failed handshake never stops the listener (failures
//! are logged at debug level and counted in `presage_tls_handshake_failures_total{listener}`).
//! Established connections are handed to axum (through [`axum::serve::Listener`], which keeps
//! graceful shutdown) or to tonic (as a stream of connections).
//!
//! The rustls configurations are rebuilt from the files whenever one of them changes (checked
//! every `tls.reload_interval`): new connections use the new certificate, key and client CA,
//! established ones keep theirs. A new set of files that does not load (unreadable, not PEM, a
//! key that does not match the certificate) is logged and counted in
//! `presage_tls_reloads_total{result="error"}`; the previous configuration stays in use.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use presage_config::{TlsConfig, TlsMaterial};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::app::App;
use crate::connections::{self, ConnectionSlots, Limited};

/// Longest a client may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in progress on one listener; more connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;
/// Established connections waiting for the server to pick them up.
const READY_QUEUE: usize = 64;

/// The application protocol a listener speaks, offered through ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// HTTP/1.1 (the HTTP API and OTLP/HTTP).
    Http1,
    /// HTTP/2 (OTLP/gRPC).
    H2,
}

/// Always the same certificate: each reload builds a new configuration around a new one.
#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// What a file looked like when it was last loaded: reloading happens when this changes.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The configurations in use.
struct Current {
    http1: Arc<ServerConfig>,
    h2: Arc<ServerConfig>,
}

/// TLS for every listener, reloadable.
pub struct Tls {
    config: TlsConfig,
    current: RwLock<Current>,
    /// The files' stamps at the last load attempt, successful or not.
    stamps: Mutex<Vec<Stamp>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert_file", &self.config.cert_file)
            .field("client_ca_file", &self.config.client_ca_file)
            .finish_non_exhaustive()
    }
}

fn server_config(material: &TlsMaterial, alpn: Alpn) -> Result<ServerConfig, String> {
    let provider = presage_config::tls::crypto_provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &material.client_roots {
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
                .build()
                .map_err(|e| format!("unusable client CA: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config =
        builder.with_cert_resolver(Arc::new(FixedCert(material.certified_key.clone())));
    config.alpn_protocols = match alpn {
        Alpn::Http1 => vec![b"http/1.1".to_vec()],
        Alpn::H2 => vec![b"h2".to_vec()],
    };
    Ok(config)
}

fn build(material: &TlsMaterial) -> Result<Current, String> {
    Ok(Current {
        http1: Arc::new(server_config(material, Alpn::Http1)?),
        h2: Arc::new(server_config(material, Alpn::H2)?),
    })
}

impl Tls {
    /// Loads `[tls]`: `None` when TLS is off. The error lists every problem with its key.
    pub fn from_config(config: &TlsConfig) -> Result<Option<Arc<Self>>, String> {
        let stamps = Self::stamps_of(config);
        let Some(material) = load(config)? else {
            return Ok(None);
        };
        Ok(Some(Arc::new(Self {
            config: config.clone(),
            current: RwLock::new(build(&material)?),
            stamps: Mutex::new(stamps),
        })))
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certificates(&self) -> bool {
        self.config.client_ca_file.is_some()
    }

    fn files(config: &TlsConfig) -> impl Iterator<Item = &PathBuf> {
        [&config.cert_file, &config.key_file, &config.client_ca_file]
            .into_iter()
            .flatten()
    }

    fn stamps_of(config: &TlsConfig) -> Vec<Stamp> {
        Self::files(config).map(|p| stamp(p)).collect()
    }

    /// The configuration new connections get.
    fn current(&self, alpn: Alpn) -> Arc<ServerConfig> {
        let current = self.current.read();
        match alpn {
            Alpn::Http1 => current.http1.clone(),
            Alpn::H2 => current.h2.clone(),
        }
    }

    /// Loads the files again if any of them changed since the last attempt: `None` when none
    /// did, else whether the new files are now in use. Blocking (file reads).
    pub fn reload_if_changed(&self) -> Option<Result<(), String>> {
        let stamps = Self::stamps_of(&self.config);
        {
            let mut last = self.stamps.lock();
            if *last == stamps {
                return None;
            }
            *last = stamps;
        }
        let result = load(&self.config).and_then(|material| match material {
            Some(m) => build(&m),
            None => Err("TLS is no longer configured".to_string()),
        });
        Some(result.map(|current| *self.current.write() = current))
    }

    /// Checks the files every `tls.reload_interval` until `stop` resolves.
    pub async fn watch(self: Arc<Self>, app: Arc<App>, stop: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.config.reload_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = &mut stop => return,
            }
            let tls = self.clone();
            let Ok(outcome) = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await
            else {
                continue;
            };
            match outcome {
                None => {}
                Some(Ok(())) => {
                    tracing::info!(
                        cert_file = ?self.config.cert_file,
                        "TLS certificate files changed: new connections use the new ones"
                    );
                    app.telemetry.record_tls_reload(true);
                }
                Some(Err(e)) => {
                    tracing::error!(
                        error = %e,
                        "TLS certificate files changed but cannot be used; the previous ones stay in use"
                    );
                    app.telemetry.record_tls_reload(false);
                }
            }
        }
    }

    /// Starts accepting TLS connections on `tcp`; `listener` names it in logs and metrics.
    pub fn listen(
        self: &Arc<Self>,
        tcp: TcpListener,
        alpn: Alpn,
        listener: &'static str,
        app: Arc<App>,
    ) -> io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (ready, incoming) = mpsc::channel(READY_QUEUE);
        let task = tokio::spawn(accept_loop(tcp, self.clone(), alpn, listener, app, ready));
        Ok(TlsListener {
            incoming,
            local,
            task,
        })
    }
}

fn load(config: &TlsConfig) -> Result<Option<TlsMaterial>, String> {
    config.load().map_err(|problems| {
        problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    })
}

async fn accept_loop(
    tcp: TcpListener,
    tls: Arc<Tls>,
    alpn: Alpn,
    listener: &'static str,
    app: Arc<App>,
    ready: mpsc::Sender<(Limited<TlsConn>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let slots = ConnectionSlots::for_listener(&app, listener);
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        // The connection's slot is taken before it is accepted and held through its
        // handshake, so handshakes in progress count against `limits.max_connections`.
        let (tcp_conn, peer) = connections::accept_limited(&tcp, &slots).await;
        if ready.is_closed() {
            return;
        }
        let (stream, slot) = tcp_conn.into_parts();
        let acceptor = TlsAcceptor::from(tls.current(alpn));
        let ready = ready.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            drop(permit);
            match outcome {
                Ok(Ok(conn)) => {
                    // The server is gone when this fails: the connection is just closed.
                    let _ = ready.send((Limited::new(TlsConn(conn), slot), peer)).await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(listener, %peer, error = %e, "TLS handshake failed");
                    app.telemetry.record_tls_handshake_failure(listener);
                }
                Err(_) => {
                    tracing::debug!(listener, %peer, "TLS handshake timed out");
                    app.telemetry.record_tls_handshake_failure(listener);
                }
            }
        });
    }
}

/// Established TLS connections of one listener. Dropping it stops accepting.
pub struct TlsListener {
    incoming: mpsc::Receiver<(Limited<TlsConn>, SocketAddr)>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsListener")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = Limited<TlsConn>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends with the listener; nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl futures::Stream for TlsListener {
    type Item = io::Result<Limited<TlsConn>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.incoming
            .poll_recv(cx)
            .map(|next| next.map(|(conn, _)| Ok(conn)))
    }
}

/// A server-side TLS connection.
#[derive(Debug)]
pub struct TlsConn(TlsStream<TcpStream>);

impl TlsConn {
    /// The client's certificate chain, when it presented one.
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        self.0.get_ref().1.peer_certificates()
    }
}

impl Connected for TlsConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
