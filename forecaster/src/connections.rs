//! A bound on the connections each listener holds open (`limits.max_connections`).
//!
//! Every accepted connection holds one of its listener's slots until it closes. When none is
//! free the listener stops accepting: further clients wait in the kernel's accept queue (and
//! past it see their connection time out or refused) instead of each costing the daemon a file
//! descriptor, socket buffers and a task. Prometheus' `--web.max-connections` works the same
//! way. Open connections are the gauge `presage_open_connections{listener}`, and every time a
//! listener had to wait for a slot counts in `presage_connection_limit_waits_total{listener}`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::Connected;

use crate::app::App;

/// The connection slots of one listener.
#[derive(Debug, Clone)]
pub struct ConnectionSlots {
    slots: Arc<Semaphore>,
    listener: &'static str,
    open: IntGauge,
    waits: IntCounter,
    /// Whether the limit was logged: once per listener, the counter tells the rest.
    warned: Arc<AtomicBool>,
}

impl ConnectionSlots {
    /// `max` slots, published through `open` and `waits`.
    pub fn new(max: usize, listener: &'static str, open: IntGauge, waits: IntCounter) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
            listener,
            open,
            waits,
            warned: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The slots of `listener`, as `app`'s configuration and telemetry set them.
    pub fn for_listener(app: &App, listener: &'static str) -> Self {
        let (open, waits) = app.telemetry.connection_metrics(listener);
        Self::new(app.config.limits.max_connections, listener, open, waits)
    }

    /// A free slot, waiting for a connection to close when there is none.
    pub async fn acquire(&self) -> FreeSlot {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.waits.inc();
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        listener = self.listener,
                        "limits.max_connections reached: not accepting until a connection \
                         closes (further waits are counted in \
                         presage_connection_limit_waits_total)"
                    );
                }
                // The semaphore is never closed.
                match self.slots.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => std::future::pending().await,
                }
            }
        };
        FreeSlot {
            permit,
            open: self.open.clone(),
        }
    }
}

/// A slot reserved for the next connection, not yet counted as open.
#[derive(Debug)]
pub struct FreeSlot {
    permit: OwnedSemaphorePermit,
    open: IntGauge,
}

impl FreeSlot {
    /// The slot of a connection just accepted.
    pub fn take(self) -> Slot {
        self.open.inc();
        Slot {
            _permit: self.permit,
            open: self.open,
        }
    }
}

/// One open connection's slot, given back when it is dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    open: IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// A connection and the slot it holds.
#[derive(Debug)]
pub struct Limited<T> {
    io: T,
    slot: Slot,
}

impl<T> Limited<T> {
    /// `io`, holding `slot` until it is dropped.
    pub fn new(io: T, slot: Slot) -> Self {
        Self { io, slot }
    }

    /// The connection and its slot, to wrap the connection in another layer (TLS).
    pub fn into_parts(self) -> (T, Slot) {
        (self.io, self.slot)
    }
}

impl<T: Connected> Connected for Limited<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Limited<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Limited<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Whether an accept error concerns one connection only (retry at once) rather than the
/// process or the socket, such as running out of file descriptors (wait before retrying).
pub(crate) fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Accepts the next TCP connection once `slots` has a free slot, retrying failed accepts.
pub(crate) async fn accept_limited(
    tcp: &TcpListener,
    slots: &ConnectionSlots,
) -> (Limited<TcpStream>, SocketAddr) {
    let slot = slots.acquire().await;
    loop {
        match tcp.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (Limited::new(stream, slot.take()), peer);
            }
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                tracing::error!(listener = slots.listener, error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// A plain TCP listener whose connections hold slots.
#[derive(Debug)]
pub struct LimitedTcp {
    tcp: TcpListener,
    slots: ConnectionSlots,
}

impl LimitedTcp {
    /// Accepts on `tcp` while `slots` has a free slot.
    pub fn new(tcp: TcpListener, slots: ConnectionSlots) -> Self {
        Self { tcp, slots }
    }

    /// The connections as a stream, for tonic.
    pub fn into_stream(self) -> impl futures::Stream<Item = io::Result<Limited<TcpStream>>> {
        futures::stream::unfold(self, |listener| async move {
            let (conn, _) = accept_limited(&listener.tcp, &listener.slots).await;
            Some((Ok(conn), listener))
        })
    }
}

impl axum::serve::Listener for LimitedTcp {
    type Io = Limited<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        accept_limited(&self.tcp, &self.slots).await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max: usize) -> ConnectionSlots {
        let open = IntGauge::new("open", "open").unwrap();
        let waits = IntCounter::new("waits", "waits").unwrap();
        ConnectionSlots::new(max, "test", open, waits)
    }

    #[tokio::test]
    async fn a_listener_at_its_limit_accepts_again_once_a_connection_closes() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let slots = slots(2);
        let mut listener = LimitedTcp::new(tcp, slots.clone());
        let _clients: Vec<TcpStream> =
            futures::future::join_all((0..3).map(|_| TcpStream::connect(addr)))
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();

        let (first, _) = axum::serve::Listener::accept(&mut listener).await;
        let (_second, _) = axum::serve::Listener::accept(&mut listener).await;
        assert_eq!(slots.open.get(), 2);

        // The third client is connected (in the kernel's queue) but not accepted: no slot.
        let mut third = std::pin::pin!(axum::serve::Listener::accept(&mut listener));
        assert!(
            futures::poll!(third.as_mut()).is_pending(),
            "accepted past the limit"
        );
        assert_eq!(slots.waits.get(), 1);
        assert_eq!(slots.open.get(), 2);

        // Closing a connection gives its slot to the third.
        drop(first);
        let (third, _) = tokio::time::timeout(Duration::from_secs(10), third)
            .await
            .expect("accepted once a slot was free");
        assert_eq!(slots.open.get(), 2);
        drop(third);
        assert_eq!(slots.open.get(), 1);
    }
}
