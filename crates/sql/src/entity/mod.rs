//! SeaORM entities: one module per table of `convo-migrations`, nothing but the row shapes and
//! the relations the queries join along. The repositories turn them into domain values.

pub mod membership;
pub mod message;
pub mod room;
pub mod user;
