//! The one error type of the domain. Each variant is a stable code of the public API; the api
//! crate owns the code strings and maps each variant to its code and HTTP status in one place.

use std::time::Duration;

/// The input a validation rule refused, named for what it is; how a request spells it (a JSON
/// field, a query parameter) is the api crate's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// A user's email address.
    Email,
    /// A user's name.
    Username,
    /// A password, at registration or login.
    Password,
    /// The name of a room being created.
    RoomName,
    /// The start of the room names a directory search looks for.
    SearchPrefix,
    /// The size of a page of a listing.
    Limit,
    /// The history cursor to read back from.
    Before,
    /// The history cursor to read forward from.
    After,
    /// A message's text.
    Content,
    /// The key a client gives a message so that a retried send creates nothing new.
    ClientMessageId,
    /// The room a request addresses by id; also blamed when it names the room both ways or not at all.
    RoomId,
    /// The room a request addresses by name.
    RoomByName,
    /// The seq after which a live connection resumes a room.
    SinceSeq,
}

/// A value that broke one of the validation rules, naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field:?}: {message}")]
pub struct ValidationError {
    /// The input that was refused.
    pub field: Field,
    /// What is wrong with the value, for people: "must be 3-20 characters".
    pub message: String,
}

impl ValidationError {
    /// A refusal of `field`'s value, saying why.
    pub fn new(field: Field, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }
}

/// Everything a use case can refuse, plus the failures of the outside world.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// An input broke a validation rule.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// No token or ticket, a forged or expired one, or its session has ended.
    #[error("missing, invalid or expired credentials")]
    Unauthenticated,
    /// A login whose email is unknown or whose password is wrong; which of the two is not said.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// Too many failed logins for this email or client address; even a right password is
    /// refused until the window ends.
    #[error("too many failed attempts")]
    TooManyAttempts {
        /// How long to wait before the next attempt can succeed.
        retry_after: Duration,
    },
    /// The author has spent their budget of messages for the current window.
    #[error("too many messages")]
    RateLimited {
        /// How long to wait before the next message is accepted.
        retry_after: Duration,
    },
    /// Another user registered with this email (compared ignoring case).
    #[error("email is already registered")]
    EmailTaken,
    /// Another user has this username (compared ignoring case).
    #[error("username is already taken")]
    UsernameTaken,
    /// Another room has this name (compared ignoring case).
    #[error("room name is already taken")]
    RoomNameTaken,
    /// The room exists but the user has not joined it.
    #[error("not a member of this room")]
    NotAMember,
    /// The message is someone else's: only its author may edit it, and only its author or the
    /// room's owner may delete it.
    #[error("only the author may change this message")]
    NotTheAuthor,
    /// No room has this id or name.
    #[error("room not found")]
    RoomNotFound,
    /// No message has this id, or it was deleted.
    #[error("message not found")]
    MessageNotFound,
    /// A retried send's `client_message_id` named a message that has since been deleted: the
    /// retry stores nothing, and there is no message to return.
    #[error("the message sent with this clientMessageId was deleted")]
    MessageDeleted,
    /// A dependency (database, cache, session store) is unreachable; the caller may retry.
    #[error("{what} is unavailable")]
    Unavailable {
        /// The dependency, named for the log: `database`, `cache`, `rate limiter`...
        what: &'static str,
        /// The adapter's own error, for the log.
        #[source]
        source: BoxError,
    },
    /// Too many requests are waiting for a bounded resource (such as password hashing) and
    /// this one waited its whole allowance; the caller may retry after `retry_after`.
    #[error("{what} is busy")]
    Overloaded {
        /// The resource, named for people: `password hashing`.
        what: &'static str,
        /// How long to wait before trying again.
        retry_after: Duration,
    },
    /// A bug or an unexpected state; the source goes to the log, never to the client.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

/// Any error an adapter wraps, kept as the source of a [`DomainError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl DomainError {
    /// How long the caller should wait before trying again, for the refusals that have one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::TooManyAttempts { retry_after }
            | Self::RateLimited { retry_after }
            | Self::Overloaded { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Wraps an adapter failure that means "this dependency cannot be reached".
    pub fn unavailable(what: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Unavailable { what, source: source.into() }
    }

    /// Wraps an adapter failure that should never happen.
    pub fn internal(source: impl Into<BoxError>) -> Self {
        Self::Internal(source.into())
    }
}

/// The result of every use case and port.
pub type DomainResult<T> = Result<T, DomainError>;
