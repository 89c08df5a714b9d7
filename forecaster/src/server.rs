//! Binding the listeners, running them, and shutting down gracefully.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use presage_alerting::{AlertingHandle, AlertingService};
use presage_config::ForecasterConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::service::interceptor::InterceptedService;

use crate::api;
use crate::app::{App, ChartSource, Clock};
use crate::auth::{self, Auth, GrpcAuth};
use crate::connections::{ConnectionSlots, LimitedTcp};
use crate::ingest::admission::Admission;
use crate::ingest::otlp_grpc::OtlpGrpc;
use crate::ingest::otlp_http;
use crate::tls::{Alpn, Tls};

/// How often series out of retention are dropped and memory is measured.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(15);

/// Journal bytes after which a checkpoint is written without waiting for
/// `storage.checkpoint_interval` (a backfill writes this much in seconds).
const JOURNAL_CHECKPOINT_BYTES: u64 = 256 * 1024 * 1024;

/// A daemon whose listeners are bound and serving.
pub struct Running {
    /// The shared state.
    pub app: Arc<App>,
    /// Where OTLP/gRPC listens.
    pub otlp_grpc: SocketAddr,
    /// Where OTLP/HTTP listens.
    pub otlp_http: SocketAddr,
    /// Where the HTTP API listens.
    pub http: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
    alerting: AlertingHandle,
}

/// Builds the notifiers and starts the alerting service with its state in `storage.dir`.
fn start_alerting(app: &Arc<App>) -> anyhow::Result<AlertingHandle> {
    let config = &app.config;
    let mut notifiers = BTreeMap::new();
    for receiver in &config.receivers {
        let notifier = presage_alerting::notify::build(receiver)
            .with_context(|| format!("cannot set up receiver `{}`", receiver.name))?;
        notifiers.insert(receiver.name.clone(), notifier);
    }
    let dir = &config.storage.dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create storage.dir {}", dir.display()))?;
    let context = Arc::new(ChartSource(Arc::downgrade(app)));
    let clock = app.clock;
    let (handle, _task) =
        AlertingService::spawn(config, notifiers, context, Some(dir.clone()), move || {
            clock.now_ms()
        })
        .context("cannot start alerting")?;
    app.attach_alerting(handle.clone());
    Ok(handle)
}

/// Serves `router` on `tcp`, over TLS when `tls` is set, until `stop` resolves.
async fn serve_http(
    tcp: TcpListener,
    tls: Option<Arc<Tls>>,
    listener: &'static str,
    router: axum::Router,
    app: Arc<App>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        Some(tls) => {
            let incoming = tls.listen(tcp, Alpn::Http1, listener, app)?;
            axum::serve(incoming, router)
                .with_graceful_shutdown(stop)
                .await
        }
        None => {
            let slots = ConnectionSlots::for_listener(&app, listener);
            axum::serve(LimitedTcp::new(tcp, slots), router)
                .with_graceful_shutdown(stop)
                .await
        }
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for {what}"))
}

impl Running {
    /// Binds every listener (port 0 picks a free port) and starts serving.
    pub async fn start(config: ForecasterConfig, clock: Clock) -> anyhow::Result<Self> {
        // Tokens first: a daemon that cannot read them must not serve unauthenticated.
        let auth = Arc::new(Auth::from_config(&config.auth).map_err(|e| anyhow::anyhow!(e))?);
        // Likewise, a daemon configured for TLS never serves plain TCP.
        let tls = Tls::from_config(&config.tls).map_err(|e| anyhow::anyhow!(e))?;
        let grpc_listener = bind(config.server.otlp_grpc, "OTLP/gRPC (server.otlp_grpc)").await?;
        let otlp_http_listener =
            bind(config.server.otlp_http, "OTLP/HTTP (server.otlp_http)").await?;
        let http_listener = bind(config.server.http, "the HTTP API (server.http)").await?;
        let otlp_grpc = grpc_listener.local_addr()?;
        let otlp_http = otlp_http_listener.local_addr()?;
        let http = http_listener.local_addr()?;

        // The store before anything serves: a restart resumes where the last one stopped.
        let app = tokio::task::spawn_blocking(move || App::open(config, clock)).await??;
        let (shutdown, signal) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let alerting = start_alerting(&app)?;

        let stopped = |mut rx: watch::Receiver<bool>| async move {
            // Either a `true` or a dropped sender means stop.
            while !*rx.borrow_and_update() {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };

        // One set of ingest limits over the three ingest paths.
        let admission = Admission::for_app(&app).map_err(|e| anyhow::anyhow!(e))?;

        let api_router = auth::guard_http(
            api::router_with_admission(app.clone(), admission.clone()),
            auth.clone(),
            app.clone(),
            auth::LISTENER_HTTP,
            auth::http_path_kind,
        );
        let api_router = api::with_latency_metrics(api_router, app.clone(), "http");
        let rx = signal.clone();
        let (serve_tls, serve_app) = (tls.clone(), app.clone());
        tasks.spawn(async move {
            serve_http(
                http_listener,
                serve_tls,
                auth::LISTENER_HTTP,
                api_router,
                serve_app,
                stopped(rx),
            )
            .await
            .context("HTTP API server failed")
        });

        let otlp_router = auth::guard_http(
            otlp_http::router_with_admission(app.clone(), admission.clone()),
            auth.clone(),
            app.clone(),
            auth::LISTENER_OTLP_HTTP,
            auth::otlp_http_path_kind,
        );
        let otlp_router = api::with_latency_metrics(otlp_router, app.clone(), "otlp_http");
        let rx = signal.clone();
        let (serve_tls, serve_app) = (tls.clone(), app.clone());
        tasks.spawn(async move {
            serve_http(
                otlp_http_listener,
                serve_tls,
                auth::LISTENER_OTLP_HTTP,
                otlp_router,
                serve_app,
                stopped(rx),
            )
            .await
            .context("OTLP/HTTP server failed")
        });

        let grpc = OtlpGrpc::with_admission(app.clone(), admission);
        let max_streams = app.config.limits.max_streams_per_connection;
        let grpc_auth = GrpcAuth::new(auth.clone(), app.clone());
        let rx = signal.clone();
        // Ok: TLS connections; Err: plain TCP connections.
        let grpc_incoming = match &tls {
            Some(tls) => Ok(tls.listen(
                grpc_listener,
                Alpn::H2,
                auth::LISTENER_OTLP_GRPC,
                app.clone(),
            )?),
            None => Err(LimitedTcp::new(
                grpc_listener,
                ConnectionSlots::for_listener(&app, auth::LISTENER_OTLP_GRPC),
            )),
        };
        tasks.spawn(async move {
            let router = tonic::transport::Server::builder()
                .max_concurrent_streams(max_streams)
                .add_service(InterceptedService::new(
                    grpc.metrics_server(),
                    grpc_auth.clone(),
                ))
                .add_service(InterceptedService::new(grpc.logs_server(), grpc_auth));
            let served = match grpc_incoming {
                Ok(incoming) => {
                    router
                        .serve_with_incoming_shutdown(incoming, stopped(rx))
                        .await
                }
                Err(tcp) => {
                    router
                        .serve_with_incoming_shutdown(tcp.into_stream(), stopped(rx))
                        .await
                }
            };
            served.context("OTLP/gRPC server failed")
        });

        if let Some(tls) = &tls {
            let (tls, watch_app, rx) = (tls.clone(), app.clone(), signal.clone());
            tasks.spawn(async move {
                tls.watch(watch_app, stopped(rx)).await;
                Ok(())
            });
        }

        // The fit pool: fits run on blocking threads, at most `model.fit_concurrency` at once.
        if let Some(mut queue) = app.take_fit_queue() {
            let workers = match app.config.model.fit_concurrency {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            };
            let permits = Arc::new(tokio::sync::Semaphore::new(workers));
            let pool_app = app.clone();
            let mut rx = signal.clone();
            tasks.spawn(async move {
                loop {
                    let job = tokio::select! {
                        job = queue.recv() => job,
                        changed = rx.changed() => {
                            if changed.is_err() || *rx.borrow() {
                                return Ok(());
                            }
                            continue;
                        }
                    };
                    let Some(job) = job else { return Ok(()) };
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        return Ok(());
                    };
                    let app = pool_app.clone();
                    tokio::task::spawn_blocking(move || {
                        app.run_fit(job);
                        drop(permit);
                    });
                }
            });
        }

        let maintenance_app = app.clone();
        let mut rx = signal.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let app = maintenance_app.clone();
                        // Walking the store takes each shard lock in turn: keep it off the
                        // executor threads.
                        let _ = tokio::task::spawn_blocking(move || app.maintain()).await;
                    }
                    changed = rx.changed() => {
                        if changed.is_err() || *rx.borrow() {
                            return Ok(());
                        }
                    }
                }
            }
        });

        if app.config.storage.durable {
            let checkpoint_app = app.clone();
            let mut rx = signal.clone();
            tasks.spawn(async move {
                // Every `checkpoint_interval`, and sooner when the journal grows past
                // JOURNAL_CHECKPOINT_BYTES (a backfill), so the journal stays small on disk.
                let every = checkpoint_app.config.storage.checkpoint_interval;
                let mut last = tokio::time::Instant::now();
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if last.elapsed() < every
                                && checkpoint_app.journal_backlog() < JOURNAL_CHECKPOINT_BYTES
                            {
                                continue;
                            }
                            last = tokio::time::Instant::now();
                            let app = checkpoint_app.clone();
                            match tokio::task::spawn_blocking(move || app.checkpoint()).await {
                                Ok(Err(e)) => tracing::error!(error = %e, "checkpoint failed; the journal keeps every write until one succeeds"),
                                Err(e) => tracing::error!(error = %e, "checkpoint task failed"),
                                Ok(Ok(_)) => {}
                            }
                        }
                        changed = rx.changed() => {
                            if changed.is_err() || *rx.borrow() {
                                return Ok(());
                            }
                        }
                    }
                }
            });
        }

        // Rule evaluation: each time event time advances, the evaluations of that step (breach
        // forecasts, fleet outliers, level shifts) go to alerting, then the tick.
        let eval_app = app.clone();
        let mut event_time = app.watch_event_time();
        let handle = alerting.clone();
        let mut rx = signal.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    changed = event_time.changed() => {
                        if changed.is_err() {
                            return Ok(());
                        }
                    }
                    changed = rx.changed() => {
                        if changed.is_err() || *rx.borrow() {
                            return Ok(());
                        }
                        continue;
                    }
                }
                let now = *event_time.borrow_and_update();
                let app = eval_app.clone();
                let signals =
                    tokio::task::spawn_blocking(move || app.signals.evaluate(&app.store, now))
                        .await
                        .unwrap_or_default();
                if !signals.is_empty() {
                    handle.send(signals).await;
                }
                handle.tick(now);
            }
        });

        // History from Prometheus (`[[backfill]]`), pulled in the background: the daemon
        // serves meanwhile. The task then waits for shutdown like the listeners do.
        if !app.config.backfill.is_empty() {
            let backfill_app = app.clone();
            let rx = signal.clone();
            tasks.spawn(async move {
                tokio::select! {
                    () = crate::backfill::run_configured(backfill_app) => {}
                    () = stopped(rx.clone()) => return Ok(()),
                }
                stopped(rx).await;
                Ok(())
            });
        }

        app.set_ready(true);
        tracing::info!(
            %otlp_grpc,
            %otlp_http,
            %http,
            ?auth,
            tls = tls.is_some(),
            client_certificates = tls.as_ref().is_some_and(|t| t.requires_client_certificates()),
            "Presage is serving"
        );
        Ok(Self {
            alerting,
            app,
            otlp_grpc,
            otlp_http,
            http,
            shutdown,
            tasks,
        })
    }

    /// Serves until `signal` resolves or a listener fails, then drains in-flight requests for
    /// up to `server.shutdown_grace`.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        let failure = tokio::select! {
            () = signal => None,
            Some(joined) = self.tasks.join_next() => Some(match joined {
                Ok(Ok(())) => anyhow::anyhow!("a listener stopped unexpectedly"),
                Ok(Err(e)) => e,
                Err(e) => anyhow::anyhow!("a listener task panicked: {e}"),
            }),
        };
        let result = self.shutdown().await;
        match failure {
            Some(e) => Err(e),
            None => result,
        }
    }

    /// Stops accepting, drains in-flight requests for up to `server.shutdown_grace`.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.app.set_ready(false);
        let _ = self.shutdown.send(true);
        // Deliveries in flight get a short grace; alert state and the notification log are saved.
        self.alerting.shutdown().await;
        let grace = self.app.config.server.shutdown_grace;
        let drain = async {
            while let Some(joined) = self.tasks.join_next().await {
                if let Ok(Err(e)) = joined {
                    tracing::warn!(error = %e, "listener ended with an error during shutdown");
                }
            }
        };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!(grace = ?grace, "in-flight requests did not finish in time; exiting anyway");
            self.tasks.abort_all();
        }
        // Everything the listeners accepted is in memory now: a last checkpoint, so the next
        // start replays no journal and refits nothing.
        let app = self.app.clone();
        match tokio::task::spawn_blocking(move || app.close_store()).await {
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the last checkpoint failed; the next start replays the journal")
            }
            Err(e) => tracing::error!(error = %e, "the last checkpoint failed"),
            Ok(Ok(())) => {}
        }
        tracing::info!("Presage stopped");
        Ok(())
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}
