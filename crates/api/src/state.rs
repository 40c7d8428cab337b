//! What every handler shares: the use cases (the domain's inbound ports) and the readiness probes.

use std::sync::Arc;

use convo_domain::{AuthService, LiveService, MessageService, Probe, RoomService};

/// The domain's use cases behind the API, as trait objects: the server crate builds them from
/// whichever adapters the configuration chose, and a test can hand in mocks.
#[derive(Clone)]
pub struct AppState {
    pub auth: Arc<dyn AuthService>,
    /// Rooms and memberships: the room routes, and the gateway's `members` frame.
    pub rooms: Arc<dyn RoomService>,
    /// Sending, reading, editing and deleting messages: the message routes and the gateway.
    pub messages: Arc<dyn MessageService>,
    /// The live side of rooms: the WebSocket gateway.
    pub live: Arc<dyn LiveService>,
    /// Dependencies `/ready` checks (database, cache).
    pub probes: Vec<Arc<dyn Probe>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let probes: Vec<&str> = self.probes.iter().map(|probe| probe.name()).collect();
        f.debug_struct("AppState").field("probes", &probes).finish_non_exhaustive()
    }
}
