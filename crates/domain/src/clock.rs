//! The time, as a port so that tests can hold it still.

use chrono::{DateTime, SubsecRound, Utc};

/// Where the use cases read the time; a test fixes it to a known instant.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync {
    /// The current instant, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock, to the microsecond: the finest precision every database keeps, so a
/// timestamp reads back exactly as it was written.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}
