//! Room events: what happened, published after it is stored, to every interested connection on
//! every instance.

use async_trait::async_trait;
use tokio::sync::{broadcast, watch};

use crate::error::DomainResult;
use crate::id::{MessageId, RoomId, SessionId, UserId};
use crate::message::Message;
use crate::user::UserRef;

/// Something that happened, for live subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message was stored, with the seq it was given.
    MessageCreated(Message),
    /// A message's content was replaced; it carries the new content and `edited_at`.
    MessageEdited(Message),
    /// A message was deleted; its seq stays unused.
    MessageDeleted {
        /// The room the message was in.
        room_id: RoomId,
        /// The message that is gone.
        message_id: MessageId,
        /// The seq it had, so a live stream tells of the deletion only after the message.
        seq: i64,
    },
    /// A user joined the room.
    MemberJoined {
        /// The room joined.
        room_id: RoomId,
        /// Who joined.
        user: UserRef,
    },
    /// A user left the room.
    MemberLeft {
        /// The room left.
        room_id: RoomId,
        /// Who left.
        user: UserRef,
    },
    /// A user is typing in the room; nothing is stored.
    Typing {
        /// The room typed in.
        room_id: RoomId,
        /// Who is typing.
        user: UserRef,
    },
    /// A user's first connection opened (`online`) or last one closed, told to each room of theirs.
    Presence {
        /// One room the user belongs to.
        room_id: RoomId,
        /// Whose presence changed.
        user: UserRef,
        /// `true` when the user came online, `false` when their last connection closed.
        online: bool,
    },
    /// A user no longer belongs to a room, told to every instance so that none keeps trusting
    /// the membership from memory. Room subscribers hear of it as [`Event::MemberLeft`].
    MembershipEnded {
        /// The room left.
        room_id: RoomId,
        /// Who left it.
        user_id: UserId,
    },
    /// These sessions ended (logout, logout-all): their connections must close.
    SessionsRevoked {
        /// Whose sessions ended.
        user_id: UserId,
        /// The sessions that ended; their tokens are no longer accepted.
        sessions: Vec<SessionId>,
    },
}

/// Where an event is delivered: the subscribers of a room, or everyone who must know which
/// sessions or memberships ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Everything that happens in one room, for its members' connections.
    Room(RoomId),
    /// Ended sessions, for every instance: its live connections close and its cache of
    /// sessions forgets them. One topic for all users, since revocations are rare and an
    /// instance must hear all of them to trust any session it remembers.
    Sessions,
    /// Ended memberships, for every instance: its memory of memberships forgets them. One topic
    /// for all rooms, since an instance must hear every leave to trust any membership it
    /// remembers, whichever rooms it has live connections in.
    Memberships,
}

impl Event {
    /// The topic the event is delivered on: its room's, [`Topic::Sessions`] for revocations, or
    /// [`Topic::Memberships`] for ended memberships.
    pub fn topic(&self) -> Topic {
        match self {
            Self::MessageCreated(message) | Self::MessageEdited(message) => Topic::Room(message.room_id),
            Self::MessageDeleted { room_id, .. }
            | Self::MemberJoined { room_id, .. }
            | Self::MemberLeft { room_id, .. }
            | Self::Typing { room_id, .. }
            | Self::Presence { room_id, .. } => Topic::Room(*room_id),
            Self::MembershipEnded { .. } => Topic::Memberships,
            Self::SessionsRevoked { .. } => Topic::Sessions,
        }
    }
}

/// Why a [`Subscription`] has no event to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// The subscriber fell behind and this many events were lost to it (0: an unknown number,
    /// when the bus itself lost its link to the other instances for a while): it should
    /// resynchronise (read what it missed from storage), then carry on.
    #[error("fell {0} events behind")]
    Lagged(u64),
    /// The feed ended; no event will come any more.
    #[error("the feed ended")]
    Closed,
}

/// A live feed of one topic; dropping it unsubscribes. A subscriber that falls more than the
/// bus's buffer behind gets [`SubscriptionError::Lagged`] and should resynchronise; so does
/// every subscriber of a bus whose link to the other instances came back after a break
/// ([`Subscription::resyncing`]), since what was published meanwhile never reached it.
///
/// Adapters feed it from an in-process broadcast channel (the one the bus fans out on), so
/// receiving costs what the channel costs: no boxing, no allocation per event.
#[derive(Debug)]
pub struct Subscription {
    events: broadcast::Receiver<Event>,
    /// Changes whenever events may have been lost to every subscriber of the bus at once.
    resync: Option<watch::Receiver<u64>>,
}

impl Subscription {
    /// A subscription fed by an adapter's broadcast channel.
    pub fn new(events: broadcast::Receiver<Event>) -> Self {
        Self { events, resync: None }
    }

    /// A subscription that also gets [`SubscriptionError::Lagged`]`(0)` once each time `resync`
    /// changes after it was created: for an adapter that can lose events on every topic at once
    /// (a dropped connection), and says so by changing the value when it hears again.
    pub fn resyncing(events: broadcast::Receiver<Event>, mut resync: watch::Receiver<u64>) -> Self {
        resync.mark_unchanged();
        Self { events, resync: Some(resync) }
    }

    /// The next event, waiting for it.
    pub async fn recv(&mut self) -> Result<Event, SubscriptionError> {
        let received = match &mut self.resync {
            None => self.events.recv().await,
            Some(resync) => tokio::select! {
                biased;
                changed = resync.changed() => {
                    if changed.is_ok() {
                        resync.mark_unchanged();
                        return Err(SubscriptionError::Lagged(0));
                    }
                    // The adapter is gone; its channel closes too.
                    self.resync = None;
                    self.events.recv().await
                }
                received = self.events.recv() => received,
            },
        };
        received.map_err(|error| match error {
            broadcast::error::RecvError::Lagged(missed) => SubscriptionError::Lagged(missed),
            broadcast::error::RecvError::Closed => SubscriptionError::Closed,
        })
    }

    /// The next event if one has arrived, `Ok(None)` if none has yet.
    pub fn try_recv(&mut self) -> Result<Option<Event>, SubscriptionError> {
        if let Some(resync) = &mut self.resync
            && resync.has_changed().unwrap_or(false)
        {
            resync.mark_unchanged();
            return Err(SubscriptionError::Lagged(0));
        }
        match self.events.try_recv() {
            Ok(event) => Ok(Some(event)),
            Err(broadcast::error::TryRecvError::Empty) => Ok(None),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => Err(SubscriptionError::Lagged(missed)),
            Err(broadcast::error::TryRecvError::Closed) => Err(SubscriptionError::Closed),
        }
    }
}

/// Delivers events to subscribers on every instance.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Delivers the event to every current subscriber of its [`Event::topic`], on every
    /// instance, without waiting for them; a topic nobody subscribes to drops it.
    async fn publish(&self, event: Event) -> DomainResult<()>;
    /// Publishes the events in order, as [`Self::publish`] would one by one; an adapter may
    /// send them together.
    async fn publish_all(&self, events: Vec<Event>) -> DomainResult<()> {
        for event in events {
            self.publish(event).await?;
        }
        Ok(())
    }
    /// A feed of the events published on `topic` from now on.
    async fn subscribe(&self, topic: Topic) -> DomainResult<Subscription>;
    /// Whether this instance hears what other instances publish: `Some(mark)` while it does,
    /// where `mark` changes whenever events may have been missed since (the link to the others
    /// dropped and came back, or fell behind), and `None` while it is cut off. What is kept
    /// correct by events (a cache of sessions or memberships) may be trusted only while the
    /// mark it was filled under still holds. A bus that spans one process hears everything: `Some(0)`.
    fn continuity(&self) -> Option<u64> {
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typing() -> Event {
        Event::Typing {
            room_id: RoomId::generate(),
            user: UserRef { id: UserId::generate(), username: crate::Username::parse("ada").unwrap() },
        }
    }

    #[tokio::test]
    async fn a_resyncing_subscription_reports_each_break_once_and_then_carries_on() {
        let (events, receiver) = broadcast::channel(8);
        let resync = watch::Sender::new(7);
        let mut subscription = Subscription::resyncing(receiver, resync.subscribe());
        // What happened before the subscription is no news to it.
        assert_eq!(subscription.try_recv(), Ok(None));

        let event = typing();
        events.send(event.clone()).unwrap();
        resync.send_modify(|generation| *generation += 1);
        // The loss comes first: the subscriber reads what it missed, then the buffered events.
        assert_eq!(subscription.recv().await, Err(SubscriptionError::Lagged(0)));
        assert_eq!(subscription.recv().await, Ok(event.clone()));

        resync.send_modify(|generation| *generation += 1);
        assert_eq!(subscription.try_recv(), Err(SubscriptionError::Lagged(0)));
        assert_eq!(subscription.try_recv(), Ok(None));

        // The adapter gone: its channel ends the feed.
        drop(resync);
        drop(events);
        assert_eq!(subscription.recv().await, Err(SubscriptionError::Closed));
    }

    #[tokio::test]
    async fn a_plain_subscription_never_reports_a_resync() {
        let (events, receiver) = broadcast::channel(8);
        let mut subscription = Subscription::new(receiver);
        let event = typing();
        events.send(event.clone()).unwrap();
        assert_eq!(subscription.recv().await, Ok(event));
        assert_eq!(subscription.try_recv(), Ok(None));
    }
}
