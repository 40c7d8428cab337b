//! # Convo's SQL storage adapter
//!
//! An outbound adapter of the hexagon: [`SqlStore`] implements the domain's storage ports
//! (`UserRepository`, `RoomRepository`, `MessageRepository`) and its readiness `Probe` on
//! PostgreSQL or SQLite through SeaORM, chosen by the URL given to [`connect`]. The schema lives
//! in `convo-migrations`; [`SqlStore::migrate`] applies it.
//!
//! The two databases behave the same, which the contract tests in `tests/` check by running
//! every test on both: case-insensitive uniqueness goes through keys the domain computes, prefix
//! search is an index range in code point order, and each room's message seqs come from a
//! counter row updated in the same transaction as the insert.
//!
//! With the `testing` feature, [`testing::TestDatabase`] gives other crates' tests a fresh
//! migrated database.

mod entity;
mod error;
mod message;
mod room;
mod store;
mod user;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::SqlError;
pub use store::{SqlStore, connect};
