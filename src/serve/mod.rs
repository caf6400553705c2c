//! `graft serve`: an HTTP prediction service over saved recognizers and KNN indexes (feature
//! `serve`, axum on tokio).
//!
//! - [`ServeOptions`]: the address, what to serve, the limits (body size, queue, timeout), the
//!   batching window, the token; each field documents its default.
//! - `models`: what is served, loaded from files and folders, folders watched (new or replaced
//!   files are loaded without a restart, a file still being written is not), bases shared by the
//!   models made with them.
//! - `batch`: requests for the same base collected for at most [`ServeOptions::batch_window_ms`]
//!   and embedded in one call; a bounded queue that answers 503 when full.
//! - `routes`: the HTTP API (`/v1/models`, `/v1/models/{name}`, `/v1/models/{name}/predict`,
//!   `/healthz`, `/readyz`, `/metrics`, `/v1/openapi.json`).
//! - `stats`: the Prometheus counters behind `/metrics`.
//!
//! [`start`] runs a server on its own threads (what the tests and the CLI use); [`Server::stop`]
//! shuts it down gracefully, finishing the requests in flight.

mod batch;
mod models;
mod openapi;
mod routes;
mod stats;
mod studio;
mod studio_api;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::base::EngineOptions;
use crate::{Error, Result};

pub use models::ModelInfo;

/// Environment variable holding the access token when `--token` is not given.
pub const TOKEN_ENV: &str = "GRAFT_TOKEN";

/// How to serve. `ServeOptions::default()` serves nothing on 127.0.0.1:8080.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ServeOptions {
    /// Recognizer and KNN index files (`.safetensors`) to serve, and folders of them (watched:
    /// files added or replaced there are loaded without a restart, removed ones unloaded). A
    /// model's name is its file name without the extension.
    #[cfg_attr(feature = "cli", arg(required_unless_present = "projects"))]
    pub paths: Vec<PathBuf>,
    /// The studio's projects folder (`DIR/<project>/<class>/<file>`, as `graft train` reads it):
    /// serves the studio page at `/` and `/v1/projects`; trained projects are served as models of
    /// their name. Default: no studio.
    #[cfg_attr(feature = "cli", arg(long))]
    pub projects: Option<PathBuf>,
    /// Address to listen on. Default 127.0.0.1:8080 (this machine only); any other needs a token.
    #[cfg_attr(feature = "cli", arg(long, default_value = "127.0.0.1:8080"))]
    pub addr: SocketAddr,
    /// Access token: requests to /v1 and /metrics must send `Authorization: Bearer TOKEN`.
    /// Default: $GRAFT_TOKEN, else none (allowed only on a loopback address).
    #[cfg_attr(feature = "cli", arg(long))]
    pub token: Option<String>,
    /// Largest request body in bytes (413 above). Default 32 MiB.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 32 << 20))]
    pub max_body_bytes: usize,
    /// Requests waiting for each base at most; more are answered 503 with Retry-After. Default 256.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 256))]
    pub queue: usize,
    /// How long a request may take in all, in milliseconds (504 after). Default 30000.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 30_000))]
    pub timeout_ms: u64,
    /// How long the first request of a batch waits for others, in milliseconds. Default 2.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 2))]
    pub batch_window_ms: u64,
    /// Most examples embedded in one call. Default 4: on the CPU larger batches embed no faster
    /// per example but hold more memory and make the last of a batch wait (bench/serve.sh).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 4))]
    pub max_batch: usize,
    /// How often watched folders are looked at, in milliseconds. Default 1000.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 1000))]
    pub watch_ms: u64,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub engine: EngineOptions,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            paths: Vec::new(),
            projects: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            max_body_bytes: 32 << 20,
            queue: 256,
            timeout_ms: 30_000,
            batch_window_ms: 2,
            max_batch: 4,
            watch_ms: 1000,
            engine: EngineOptions::default(),
        }
    }
}

impl ServeOptions {
    /// Checks the options: limits above zero, a token (from the options or $GRAFT_TOKEN) on any
    /// address that is not loopback. Gives the token to use.
    fn check(&self) -> Result<Option<String>> {
        let token = self
            .token
            .clone()
            .or_else(|| std::env::var(TOKEN_ENV).ok())
            .filter(|t| !t.is_empty());
        if token.is_none() && !self.addr.ip().is_loopback() {
            return Err(Error::Invalid(format!(
                "serving on {} (not this machine only) needs a token: --token or ${TOKEN_ENV}",
                self.addr
            )));
        }
        let positive = [
            ("max body bytes", self.max_body_bytes as u64),
            ("queue", self.queue as u64),
            ("timeout", self.timeout_ms),
            ("max batch", self.max_batch as u64),
            ("watch interval", self.watch_ms),
        ];
        if let Some((what, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(Error::Invalid(format!("the {what} must be above 0")));
        }
        if self.paths.is_empty() && self.projects.is_none() {
            return Err(Error::Invalid(
                "nothing to serve: give model files or folders, or --projects DIR".into(),
            ));
        }
        Ok(token)
    }
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
    models: Vec<ModelInfo>,
}

impl Server {
    /// The address it listens on (with the port the system chose when `addr` had port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The models it served when it started.
    pub fn models(&self) -> &[ModelInfo] {
        &self.models
    }

    /// Stops accepting connections, finishes the requests in flight, and returns.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    /// Serves until SIGINT (Ctrl-C) or SIGTERM, then stops as [`Server::stop`] does. Only this
    /// listens for signals: a program that embeds the server keeps its own handling otherwise.
    pub fn wait(self) -> Result<()> {
        let signals = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("waiting for a signal: {e}")))?;
        signals.block_on(shutdown_signal());
        self.stop()
    }

    fn shutdown(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::Internal("the server thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// How long requests in flight may take to finish once the server is told to stop, beyond the
/// request timeout; connections still open then (e.g. event streams) are closed.
const GRACE: Duration = Duration::from_secs(1);

/// Loads what `options` names, binds its address and serves on a thread pool of its own until
/// [`Server::stop`] (or, with [`Server::wait`], SIGINT or SIGTERM). Fails before serving when a
/// model cannot be loaded or the address cannot be bound.
pub fn start(options: ServeOptions) -> Result<Server> {
    let token = options.check()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("graft-serve")
        .build()
        .map_err(|e| Error::Internal(format!("starting the server's threads: {e}")))?;
    let state = runtime.block_on(async { models::State::load(&options, token) })?;
    let state = Arc::new(state);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(options.addr))
        .map_err(|e| Error::Invalid(format!("cannot listen on {}: {e}", options.addr)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Invalid(format!("cannot listen on {}: {e}", options.addr)))?;
    let infos = state.infos();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let watch = Duration::from_millis(options.watch_ms);
    let grace = Duration::from_millis(options.timeout_ms) + GRACE;
    let thread = std::thread::Builder::new()
        .name("graft-serve".into())
        .spawn(move || {
            runtime.block_on(async move {
                let watcher = tokio::spawn(models::watch(state.clone(), watch));
                let app = routes::router(state.clone());
                let (told, mut told_rx) = tokio::sync::watch::channel(false);
                let stopping = state.clone();
                let stopped = async move {
                    let _ = stop_rx.await;
                    stopping.stopping();
                    let _ = told.send(true);
                };
                let serve = axum::serve(listener, app).with_graceful_shutdown(stopped);
                // After the stop, in-flight requests get `grace` to finish.
                let deadline = async move {
                    let _ = told_rx.wait_for(|t| *t).await;
                    tokio::time::sleep(grace).await;
                };
                let served = tokio::select! {
                    served = serve => served
                        .map_err(|e| Error::Internal(format!("the server stopped: {e}"))),
                    _ = deadline => Ok(()),
                };
                watcher.abort();
                served
            })
        })
        .map_err(|e| Error::Internal(format!("starting the server thread: {e}")))?;
    Ok(Server {
        addr,
        stop: Some(stop_tx),
        thread: Some(thread),
        models: infos,
    })
}

/// SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
