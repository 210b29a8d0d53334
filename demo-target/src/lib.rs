//! Embedded demo target: a small HTTP/1.1 + WebSocket server that scenarios can be pointed at
//! (`chaperon-host target`) and that the test-suite uses as a counting server.
//!
//! Every connection runs in its own task; a WebSocket upgrade continues in the task of the
//! connection it came from, so shutting the server down ends every socket at once.
//!
//! # Two ways to start it
//!
//! - [`TargetServer::start`] serves in tasks of the caller's tokio runtime. Good enough when
//!   that runtime has spare workers: the standalone `chaperon-host target`, small tests.
//! - [`TargetServer::start_on_own_runtime`] serves on a dedicated OS thread with its own
//!   single-threaded tokio runtime. Use it when a load generator runs in the same process: a
//!   generator that keeps every worker of the main runtime busy cannot then starve the
//!   target's accept loop (whose connections would otherwise pile up in the kernel's queue,
//!   overflow it and time out or be refused).
//!
//! Either way the server stops on [`TargetServer::shutdown`] or when its handle is dropped.
//!
//! # Connection storms
//!
//! The listener is bound with a listen backlog of 65,535 (tokio's `TcpListener::bind` uses
//! 1024; the kernel caps it at `net.core.somaxconn`, 4096 by default: raise it with
//! `sysctl -w net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535` for storms of
//! 20,000 connections; `chaperon-host target` warns when it is lower), so a burst of connections waits
//! in the kernel's accept queue instead of being dropped. The accept loop does nothing per
//! connection but count it and spawn its task (no I/O, no socket options, no waiting), and
//! an aborted or reset handshake is skipped at once rather than backed off, so the queue is
//! drained as fast as the runtime lets the loop run.
//!
//! # Modules
//!
//! `server` (listener, accept loop, per-connection dispatch), `http_routes` (plain HTTP),
//! `websocket` (upgrades and WebSocket sessions), `topics` (publish/subscribe), `stats`
//! ([`TargetStats`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

mod http_routes;
mod server;
mod stats;
mod topics;
mod websocket;

#[cfg(test)]
mod tests;

pub use server::LISTEN_BACKLOG;
pub use stats::TargetStats;

/// The accept queue the kernel really gives a listener: [`LISTEN_BACKLOG`] capped by
/// `net.core.somaxconn` (`None` when it cannot be read).
pub fn effective_backlog() -> Option<u32> {
    let max = std::fs::read_to_string("/proc/sys/net/core/somaxconn").ok()?;
    Some(max.trim().parse::<u32>().ok()?.min(LISTEN_BACKLOG))
}

use topics::Topics;

/// Name of the thread of [`TargetServer::start_on_own_runtime`].
const THREAD_NAME: &str = "chaperon-target";

/// Knobs that tests use to make the target behave in observable ways.
#[derive(Clone, Debug, Default)]
pub struct TargetOptions {
    /// Test hook: hold back every pong until this many WebSockets have been open at the same time
    /// (proves sessions really run concurrently). None = answer at once.
    pub hold_pongs_until_open: Option<usize>,
}

/// A running demo target; it stops on [`TargetServer::shutdown`] or when dropped.
pub struct TargetServer {
    addr: SocketAddr,
    stats: Arc<TargetStats>,
    /// Sending `true` (or dropping the sender) stops the accept loop and all connections.
    stop: watch::Sender<bool>,
    runner: Runner,
}

/// Where the accept loop runs.
enum Runner {
    /// A task of the caller's runtime.
    Task(JoinHandle<()>),
    /// A dedicated thread with its own runtime; resolves once that runtime is gone (an error
    /// only means the thread ended without saying so).
    Thread(oneshot::Receiver<()>),
}

impl TargetServer {
    /// Binds `listen` (port 0 allowed) and serves in background tokio tasks until shutdown/drop.
    ///
    /// The tasks run on the caller's runtime; see [`TargetServer::start_on_own_runtime`] when
    /// that runtime may be saturated by other work.
    pub async fn start(
        listen: SocketAddr,
        options: TargetOptions,
    ) -> std::io::Result<TargetServer> {
        let listener = server::bind(listen)?;
        let addr = listener.local_addr()?;
        let shared = Shared::new(options);
        let stats = Arc::clone(&shared.stats);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(server::accept_loop(listener, shared, stop_rx));
        Ok(TargetServer {
            addr,
            stats,
            stop,
            runner: Runner::Task(task),
        })
    }

    /// Binds `listen` (port 0 allowed) and serves on a dedicated OS thread with its own
    /// single-threaded tokio runtime until shutdown/drop.
    ///
    /// The target then keeps accepting and answering however busy the caller's runtime is,
    /// which matters when a load generator in the same process saturates its workers. Works
    /// inside or outside a tokio runtime; it blocks the caller only until the thread has
    /// bound the socket.
    pub fn start_on_own_runtime(
        listen: SocketAddr,
        options: TargetOptions,
    ) -> std::io::Result<TargetServer> {
        let shared = Shared::new(options);
        let stats = Arc::clone(&shared.stats);
        let (stop, stop_rx) = watch::channel(false);
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = bound_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    // The listener must be registered with this thread's runtime.
                    let listener = match server::bind(listen) {
                        Ok(listener) => listener,
                        Err(e) => {
                            let _ = bound_tx.send(Err(e));
                            return;
                        }
                    };
                    // An error means the caller is gone: nobody to serve.
                    if bound_tx.send(listener.local_addr()).is_ok() {
                        server::accept_loop(listener, shared, stop_rx).await;
                    }
                });
                // Dropping the runtime closes whatever connection is left.
                drop(runtime);
                let _ = done_tx.send(());
            })?;
        let addr = match bound_rx.recv() {
            Ok(bound) => bound?,
            Err(_) => {
                return Err(io::Error::other(
                    "the target thread ended before binding its socket",
                ));
            }
        };
        Ok(TargetServer {
            addr,
            stats,
            stop,
            runner: Runner::Thread(done_rx),
        })
    }

    /// The bound address (useful after binding port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL for scenarios, e.g. `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Live counters; they keep counting while the server runs.
    pub fn stats(&self) -> Arc<TargetStats> {
        Arc::clone(&self.stats)
    }

    /// Stops accepting, ends every open connection and waits until all of it is gone.
    pub async fn shutdown(self) {
        // An error only means the accept loop is already gone.
        let _ = self.stop.send(true);
        match self.runner {
            Runner::Task(task) => {
                let _ = task.await;
            }
            Runner::Thread(done) => {
                let _ = done.await;
            }
        }
    }
}

/// Starts the target, announces it on stdout and serves until Ctrl-C.
pub async fn serve_until_ctrl_c(listen: SocketAddr) -> std::io::Result<()> {
    let server = TargetServer::start(listen, TargetOptions::default()).await?;
    println!(
        "chaperon demo target listening on {} (Ctrl-C to stop)",
        server.base_url()
    );
    let signal = tokio::signal::ctrl_c().await;
    server.shutdown().await;
    signal
}

/// State shared by all connections of one server.
struct Shared {
    stats: Arc<TargetStats>,
    options: TargetOptions,
    next_item_id: AtomicU64,
    topics: Topics,
}

impl Shared {
    fn new(options: TargetOptions) -> Arc<Shared> {
        Arc::new(Shared {
            stats: Arc::new(TargetStats::default()),
            options,
            next_item_id: AtomicU64::new(1),
            topics: Topics::default(),
        })
    }
}
