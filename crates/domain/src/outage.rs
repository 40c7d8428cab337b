//! Outages of a dependency, logged once when they start and once when they end, however many
//! calls fail in between.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether a dependency is out, with what to log when that changes: a warning (with the error)
/// on the first failure of an outage, a note on the first success after it.
#[derive(Debug)]
pub struct OutageLog {
    out: AtomicBool,
    down: &'static str,
    back: &'static str,
}

impl OutageLog {
    /// `down` is logged when an outage starts, `back` when it ends; both say what the outage
    /// means for the service ("Redis unreachable: events reach this instance only").
    pub const fn new(down: &'static str, back: &'static str) -> Self {
        Self { out: AtomicBool::new(false), down, back }
    }

    /// Notes a failed call; logs `down` if it starts an outage, and then answers `true`.
    pub fn failed(&self, error: &(impl Display + ?Sized)) -> bool {
        let started = !self.out.swap(true, Ordering::Relaxed);
        if started {
            tracing::warn!(%error, "{}", self.down);
        }
        started
    }

    /// Notes a successful call; logs `back` if it ends an outage, and then answers `true`.
    pub fn recovered(&self) -> bool {
        let ended = self.out.swap(false, Ordering::Relaxed);
        if ended {
            tracing::info!("{}", self.back);
        }
        ended
    }

    /// Whether the last call noted failed.
    pub fn is_out(&self) -> bool {
        self.out.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_reported_once_when_it_starts_and_once_when_it_ends() {
        let log = OutageLog::new("down", "back");
        assert!(!log.recovered(), "nothing to recover from");
        assert!(log.failed("refused"));
        assert!(!log.failed("refused"), "the same outage");
        assert!(log.is_out());
        assert!(log.recovered());
        assert!(!log.recovered());
        assert!(!log.is_out());
        assert!(log.failed("timed out"), "a new outage");
    }
}
