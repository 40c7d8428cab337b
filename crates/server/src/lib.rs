//! # The Convo server
//!
//! The outermost ring of the hexagon and the only crate that knows every adapter: it reads the
//! [`Config`], picks the adapters it names (SQLite or PostgreSQL storage; the in-process
//! adapters for sessions, rate limits, the message cache, events and presence), builds the
//! domain services, and serves the api crate's application until a shutdown signal.

pub mod adapters;
pub mod config;
mod listener;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use adapters::Adapters;
pub use convo_api::ws::Shutdown;
use convo_api::{AppState, HttpSettings};
use convo_domain::{AuthPorts, AuthSettings, AuthUseCases, ChatPorts, ChatUseCases, RateLimit, SystemClock};
use poem::listener::{Acceptor, Listener, TcpListener};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{Config, ConfigError, Environment};

/// How long in-flight requests may run on after a shutdown signal.
const GRACE_PERIOD: Duration = Duration::from_secs(30);
/// How long WebSockets may take after that to answer what is in flight and send their close.
const SOCKETS_GRACE: Duration = Duration::from_secs(3);

/// Why the server could not start, in one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("REDIS_URL: {0}")]
    Redis(#[from] convo_redis::RedisError),
    #[error(transparent)]
    Database(#[from] convo_sql::SqlError),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: String, source: io::Error },
}

/// Connects to the database and applies every pending migration.
pub async fn migrate(config: &Config) -> Result<(), StartError> {
    let store = convo_sql::connect(&config.database_url).await?;
    store.migrate().await?;
    Ok(())
}

/// Builds the HTTP application from the configuration: adapters, services, routes. Migrations
/// are applied first.
pub async fn build_app(
    config: &Config,
    shutdown: &Shutdown,
) -> Result<poem::endpoint::BoxEndpoint<'static, poem::Response>, StartError> {
    let adapters = adapters::build(config).await?;
    Ok(app_over(config, adapters, shutdown))
}

/// The HTTP application over adapters already built: the domain services and the routes. Tests
/// use it to put a decorator around one port.
pub fn app_over(
    config: &Config,
    adapters: Adapters,
    shutdown: &Shutdown,
) -> poem::endpoint::BoxEndpoint<'static, poem::Response> {
    let clock = Arc::new(SystemClock);
    let auth = AuthUseCases::new(
        AuthPorts {
            users: adapters.users.clone(),
            hasher: adapters.hasher,
            sessions: adapters.sessions,
            tickets: adapters.tickets,
            tokens: adapters.tokens,
            limiter: adapters.limiter.clone(),
            events: adapters.events.clone(),
            clock: clock.clone(),
        },
        {
            let defaults = AuthSettings::default();
            AuthSettings {
                session_ttl: config.session_ttl,
                registrations_per_address: RateLimit {
                    points: config.registrations_per_address,
                    ..defaults.registrations_per_address
                },
                ..defaults
            }
        },
    );
    let chat = ChatUseCases::new(
        ChatPorts {
            users: adapters.users,
            rooms: adapters.rooms,
            messages: adapters.messages,
            cache: adapters.cache,
            limiter: adapters.limiter,
            events: adapters.events,
            presence: adapters.presence,
            clock,
        },
        RateLimit { points: config.rate_limit_points, window: config.rate_limit_duration },
    );
    // One value implements every chat use case; the api sees each through its own port.
    let chat = Arc::new(chat);
    let state = AppState {
        auth: Arc::new(auth),
        rooms: chat.clone(),
        messages: chat.clone(),
        live: chat,
        probes: adapters.probes,
    };
    let settings = HttpSettings {
        cors_origins: config.cors_origins.clone(),
        ws_outbound_queue: config.ws_outbound_queue,
        shutdown: shutdown.clone(),
        trusted_proxies: config.trusted_proxies.clone(),
    };
    convo_api::app(state, &settings)
}

/// A server that is accepting connections.
#[derive(Debug)]
pub struct RunningServer {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl RunningServer {
    /// The address it listens on (the real port when `PORT=0`).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the end.
    pub async fn stop(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.wait().await
    }

    /// Waits until the server ends (after a shutdown signal).
    pub async fn wait(self) -> io::Result<()> {
        self.task.await.map_err(io::Error::other)?
    }
}

/// Builds the application and starts serving it on `HOST:PORT`. The server shuts down
/// gracefully on `stop`, or on SIGTERM/Ctrl-C when `listen_for_signals` is set.
pub async fn start(config: &Config, listen_for_signals: bool) -> Result<RunningServer, StartError> {
    let sockets = Shutdown::new();
    let app = build_app(config, &sockets).await?;
    let address = SocketAddr::new(config.host, config.port);
    let acceptor = TcpListener::bind(address)
        .into_acceptor()
        .await
        .map(listener::NoDelayAcceptor)
        .map_err(|source| StartError::Listen { address: address.to_string(), source })?;
    let address =
        acceptor.local_addr().first().and_then(|local| local.as_socket_addr().copied()).unwrap_or(address);

    let (stop, stopped) = oneshot::channel::<()>();
    let open_sockets = sockets.clone();
    let shutdown = async move {
        if listen_for_signals {
            tokio::select! {
                _ = stopped => {}
                () = shutdown_signal() => {}
            }
        } else {
            let _ = stopped.await;
        }
        tracing::info!("shutting down; letting in-flight requests finish");
        // WebSockets answer their in-flight frame, then close with 1001.
        sockets.trigger();
    };
    let serving = poem::Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
        app,
        shutdown,
        Some(GRACE_PERIOD),
    );
    let task = tokio::spawn(async move {
        let served = serving.await;
        // Upgraded connections are no longer poem's: let their close frames go out.
        if tokio::time::timeout(SOCKETS_GRACE, open_sockets.sockets_closed()).await.is_err() {
            tracing::warn!("WebSockets still open {SOCKETS_GRACE:?} after the shutdown; exiting anyway");
        }
        served
    });
    Ok(RunningServer { address, stop: Some(stop), task })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
