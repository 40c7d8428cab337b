//! What every handler shares: the use cases and the readiness probes.

use std::sync::Arc;

use convo_domain::{AuthService, ChatService, Probe};

/// The domain services behind the API, built by the server crate from whichever adapters the
/// configuration chose.
#[derive(Clone)]
pub struct AppState {
    pub auth: Arc<AuthService>,
    pub chat: Arc<ChatService>,
    /// Dependencies `/ready` checks (database, cache).
    pub probes: Vec<Arc<dyn Probe>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let probes: Vec<&str> = self.probes.iter().map(|probe| probe.name()).collect();
        f.debug_struct("AppState").field("probes", &probes).finish_non_exhaustive()
    }
}
