//! Readiness: each dependency the server cannot work without answers a probe.

use async_trait::async_trait;

use crate::error::DomainResult;

/// A dependency that can say whether it is reachable.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Probe: Send + Sync {
    /// What `/ready` calls it: `database`, `cache`.
    fn name(&self) -> &'static str;
    /// `Ok` when the dependency answers now; an error (usually [`DomainError::Unavailable`])
    /// when it does not.
    ///
    /// [`DomainError::Unavailable`]: crate::DomainError::Unavailable
    async fn check(&self) -> DomainResult<()>;
}
