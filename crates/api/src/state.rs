//! What every handler shares: the use cases (the domain's inbound ports) and the readiness probes.

use std::sync::Arc;

use convo_domain::{AuthService, ChatService, Probe};

/// The domain's use cases behind the API, as trait objects: the server crate builds them from
/// whichever adapters the configuration chose, and a test can hand in mocks.
#[derive(Clone)]
pub struct AppState {
    pub auth: Arc<dyn AuthService>,
    pub chat: Arc<dyn ChatService>,
    /// Dependencies `/ready` checks (database, cache).
    pub probes: Vec<Arc<dyn Probe>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let probes: Vec<&str> = self.probes.iter().map(|probe| probe.name()).collect();
        f.debug_struct("AppState").field("probes", &probes).finish_non_exhaustive()
    }
}
