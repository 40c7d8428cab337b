//! # Convo's cryptography adapters
//!
//! Outbound adapters of the hexagon for the two ports that keep secrets: [`Argon2PasswordHasher`]
//! implements the domain's `PasswordHasher` (argon2id, run on the blocking pool so the async
//! threads never stall on a deliberately slow hash, never more at once than its
//! [`HashingPool`] has permits, so that memory stays bounded), and [`JwtTokenCodec`] implements
//! `TokenCodec` (HS256 access tokens whose `sid` names a session in the session store). The JWT's
//! claims (`sub`, `sid`, `iat`, `exp`) are this crate's own format: the domain hands it an
//! `AccessGrant` and gets one back.

mod password;
mod token;

pub use password::{Argon2PasswordHasher, HashingPool, QUEUE_ALLOWANCE};
pub use token::JwtTokenCodec;
