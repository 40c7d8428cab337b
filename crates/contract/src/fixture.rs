//! What the bodies are run with: the adapter under test, and the values they feed it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use convo_domain::{Message, MessageContent, MessageId, RoomId, UserId, UserRef, Username};

/// A running contract body.
pub type BodyFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One contract body, by name, for drivers that do not use the test macros.
pub struct Case<P: ?Sized> {
    pub name: &'static str,
    pub run: fn(Arc<P>) -> BodyFuture,
}

impl<P: ?Sized> Case<P> {
    /// Runs the body against `adapter`; panics when the contract is broken.
    pub fn run(&self, adapter: Arc<P>) -> BodyFuture {
        (self.run)(adapter)
    }
}

impl<P: ?Sized> fmt::Debug for Case<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish_non_exhaustive()
    }
}

/// What a test factory may produce: the adapter, or `None` when it is not available here (a
/// Redis suite run without a server), which skips the test. Either may come paired with a guard
/// that must outlive the body, such as the throw-away database a store runs on.
pub trait Fixture<P: ?Sized> {
    /// Kept until the test ends: `()` for an adapter that needs nothing else.
    type Guard;
    fn into_adapter(self) -> Option<(Arc<P>, Self::Guard)>;
}

impl<P: ?Sized> Fixture<P> for Arc<P> {
    type Guard = ();
    fn into_adapter(self) -> Option<(Arc<P>, ())> {
        Some((self, ()))
    }
}

impl<P: ?Sized> Fixture<P> for Option<Arc<P>> {
    type Guard = ();
    fn into_adapter(self) -> Option<(Arc<P>, ())> {
        self.map(|adapter| (adapter, ()))
    }
}

impl<P: ?Sized, G> Fixture<P> for (Arc<P>, G) {
    type Guard = G;
    fn into_adapter(self) -> Option<(Arc<P>, G)> {
        Some(self)
    }
}

impl<P: ?Sized, G> Fixture<P> for Option<(Arc<P>, G)> {
    type Guard = G;
    fn into_adapter(self) -> Option<(Arc<P>, G)> {
        self
    }
}

/// The adapter a factory produced, if any, with its guard.
pub fn fixture<P: ?Sized, F: Fixture<P>>(made: F) -> Option<(Arc<P>, F::Guard)> {
    made.into_adapter()
}

/// The current time at microsecond precision, the finest every store keeps, so that values
/// compare equal after a round trip through any adapter.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// A stored message of `room` with the given seq and a content naming it.
pub fn message(room: RoomId, seq: i64) -> Message {
    Message {
        id: MessageId::generate(),
        room_id: room,
        seq,
        author: UserRef { id: UserId::generate(), username: Username::from_trusted("contract".to_owned()) },
        content: MessageContent::from_trusted(format!("message {seq}")),
        created_at: now(),
        edited_at: None,
        client_message_id: None,
    }
}

/// Messages `first..=last` of `room`, ascending.
pub fn messages(room: RoomId, first: i64, last: i64) -> Vec<Message> {
    (first..=last).map(|seq| message(room, seq)).collect()
}

/// `message` with new content and an edit time, as storage returns it after an edit.
pub fn edited(message: &Message, content: &str) -> Message {
    Message {
        content: MessageContent::from_trusted(content.to_owned()),
        edited_at: Some(now()),
        ..message.clone()
    }
}
