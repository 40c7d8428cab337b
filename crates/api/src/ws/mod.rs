//! The WebSocket gateway, `GET /ws`: live rooms over one connection per client. The protocol
//! (frames, close codes) is in [`protocol`]; the per-instance fan-out in [`hub`]; one
//! connection's life in [`connection`]. Sends, edits and deletes go through the same domain use
//! cases as REST.

pub mod connection;
pub mod handshake;
pub mod hub;
pub mod protocol;
pub mod wire;

use std::sync::Arc;

use convo_domain::{AuthService, DomainError, LiveService, MessageService, RoomService};
use poem::http::StatusCode;
use poem::web::{Data, Query};
use poem::{Request, Response, handler};
use serde::Deserialize;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::metrics::Metrics;
use crate::problem::{ApiError, ErrorCode};
use connection::Inbound;
pub use hub::Hub;

/// Frames (and messages) over this many bytes close the connection with 1009.
pub const MAX_FRAME_BYTES: usize = 16 * 1024;

/// Tells every connection that the server is shutting down (they close with 1001 once the
/// replies to their sends, edits and deletes in flight are queued), and counts the sockets
/// still open, so that the server can wait for their close frames before it exits: poem's
/// graceful shutdown stops following a connection once it is upgraded.
#[derive(Debug, Clone)]
pub struct Shutdown {
    signal: Arc<watch::Sender<bool>>,
    open: Arc<watch::Sender<usize>>,
}

impl Shutdown {
    pub fn new() -> Self {
        Self { signal: Arc::new(watch::channel(false).0), open: Arc::new(watch::channel(0).0) }
    }

    pub fn trigger(&self) {
        self.signal.send_replace(true);
    }

    /// Resolves once no socket is open (at once if none is).
    pub async fn sockets_closed(&self) {
        let _ = self.open.subscribe().wait_for(|open| *open == 0).await;
    }

    fn subscribe(&self) -> watch::Receiver<bool> {
        self.signal.subscribe()
    }

    /// Counts a socket as open until the guard is dropped.
    fn socket_opened(&self) -> OpenSocket {
        self.open.send_modify(|open| *open += 1);
        OpenSocket(Arc::clone(&self.open))
    }
}

/// A socket counted as open by [`Shutdown`].
pub struct OpenSocket(Arc<watch::Sender<usize>>);

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.send_modify(|open| *open -= 1);
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

/// What every connection shares.
#[derive(Clone)]
pub struct Gateway {
    pub auth: Arc<dyn AuthService>,
    pub rooms: Arc<dyn RoomService>,
    pub messages: Arc<dyn MessageService>,
    pub live: Arc<dyn LiveService>,
    pub hub: Hub,
    pub outbound_queue: usize,
    pub metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    sockets: Shutdown,
}

impl Gateway {
    pub fn new(
        auth: Arc<dyn AuthService>,
        rooms: Arc<dyn RoomService>,
        messages: Arc<dyn MessageService>,
        live: Arc<dyn LiveService>,
        outbound_queue: usize,
        shutdown: &Shutdown,
        metrics: Arc<Metrics>,
    ) -> Self {
        let hub = Hub::new(live.clone());
        Self {
            auth,
            rooms,
            messages,
            live,
            hub,
            outbound_queue: outbound_queue.max(1),
            metrics,
            shutdown: shutdown.subscribe(),
            sockets: shutdown.clone(),
        }
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("hub", &self.hub)
            .field("outbound_queue", &self.outbound_queue)
            .field("metrics", &self.metrics)
            .field("shutdown", &self.shutdown)
            .finish_non_exhaustive()
    }
}

/// A small read buffer, so that an idle connection costs a few KB, and the contract's frame
/// limit. tungstenite allocates its read buffer up front (128 KiB by default); with 1 KiB an
/// idle socket measured 8.6 KB of server memory in all through poem's socket, 8.7-8.8 KB on
/// tokio-tungstenite directly (`convo-ws-bench idle 2000`), 11 KB with 4 KiB. tungstenite
/// writes nothing that is sent (see [`Inbound`]), so it gets no write buffer.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

#[derive(Debug, Deserialize)]
struct TicketQuery {
    ticket: Option<String>,
}

/// `GET /ws`: authenticates by bearer header or `?ticket=` before upgrading (401 otherwise). A
/// request with credentials that is not a WebSocket upgrade is refused with 400 before they are
/// checked, so that it does not spend its ticket.
#[handler]
pub async fn endpoint(
    request: &Request,
    Query(query): Query<TicketQuery>,
    gateway: Data<&Gateway>,
) -> poem::Result<Response> {
    let credentials = Credentials::of(request, query.ticket.as_deref())?;
    let upgrade = handshake::Upgrade::check(request.headers())?;
    let on_upgrade = request.take_upgrade().map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::ValidationFailed,
            format!("this connection cannot be upgraded: {error}"),
        )
    })?;
    let grant = match credentials {
        Credentials::Bearer(token) => gateway.auth.authenticate(token).await,
        Credentials::Ticket(ticket) => gateway.auth.redeem_connect_ticket(ticket).await,
    }
    .map_err(ApiError::from)?;
    let user = gateway.auth.me(&grant.principal).await.map_err(ApiError::from)?;
    let gateway = gateway.clone();
    let open = gateway.sockets.socket_opened();
    // Runs once the 101 below has gone out and hyper hands over the connection.
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "the upgrade did not complete");
                return;
            }
        };
        let (reading, writing) = tokio::io::split(upgraded);
        let stream =
            WebSocketStream::from_raw_socket(Inbound(reading), Role::Server, Some(socket_config())).await;
        connection::run(stream, writing, gateway, grant, user, open).await;
    });
    Ok(upgrade.accept())
}

/// What an upgrade request authenticates with: a bearer token wins over a ticket.
enum Credentials<'a> {
    Bearer(&'a str),
    Ticket(&'a str),
}

impl<'a> Credentials<'a> {
    /// 401 when there are none.
    fn of(request: &'a Request, ticket: Option<&'a str>) -> Result<Self, ApiError> {
        let bearer = request
            .header("authorization")
            .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
            .map(str::trim);
        match (bearer, ticket) {
            (Some(token), _) => Ok(Self::Bearer(token)),
            (None, Some(ticket)) => Ok(Self::Ticket(ticket)),
            (None, None) => Err(DomainError::Unauthenticated.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Shutdown;

    #[tokio::test]
    async fn shutdown_waits_for_the_sockets_still_open() {
        let shutdown = Shutdown::new();
        shutdown.sockets_closed().await;
        let (first, second) = (shutdown.socket_opened(), shutdown.socket_opened());
        let waiting = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.sockets_closed().await }
        });
        drop(first);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "one socket is still open");
        drop(second);
        tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("resolved").expect("joined");
    }
}
