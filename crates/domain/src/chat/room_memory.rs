//! What an instance remembers of rooms between requests, so that a read by a member answers
//! from memory: which room a name stands for, and who belongs to which room.
//!
//! - **Names.** A room keeps its name for life and is never deleted, so once found, a name
//!   stands for the same room forever: nothing invalidates it. Only found names are kept (a
//!   room by a name not found may be created any moment), each for [`NAME_FRESH_FOR`] after it
//!   was looked up in storage, [`NAME_CAPACITY`] at most.
//! - **Memberships.** Only a membership storage confirmed is kept (a refusal always asks
//!   storage again), as a [`Remembered`] fact: a membership ends only by a leave, which the
//!   instance serving it forgets at once and announces to every instance as
//!   [`Event::MembershipEnded`] on [`Topic::Memberships`]; joins and room creation only add
//!   memberships, so nothing remembered goes wrong through them. What the bus may have missed
//!   (a cut-off, a lagging listener) drops everything remembered. A membership is trusted
//!   [`MEMBERSHIP_FRESH_FOR`] at most (the bound, should an announcement be lost to a failed
//!   publish), [`MEMBERSHIP_CAPACITY`] at most.
//!
//! Rooms nobody reads leave both memories as their entries expire.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::event::{Event, EventBus, Topic};
use crate::id::{RoomId, UserId};
use crate::remembered::{Checkpoint, ExpiringMap, Lookup, Remembered};
use crate::sync::lock;

/// How long a room name found in storage is remembered.
pub(crate) const NAME_FRESH_FOR: Duration = Duration::from_secs(300);
/// Room names remembered at most.
pub(crate) const NAME_CAPACITY: usize = 16_384;
/// How long a membership confirmed by storage is trusted without asking again.
pub(crate) const MEMBERSHIP_FRESH_FOR: Duration = Duration::from_secs(10);
/// Memberships remembered at most.
pub(crate) const MEMBERSHIP_CAPACITY: usize = 65_536;

/// One instance's memory of room names and memberships.
#[derive(Debug)]
pub(crate) struct RoomMemory {
    /// Name keys ([`crate::room::RoomName::key`]) to the rooms they stand for.
    names: Mutex<ExpiringMap<String, RoomId>>,
    memberships: Arc<Remembered<(RoomId, UserId)>>,
}

impl RoomMemory {
    pub(crate) fn new(events: Arc<dyn EventBus>) -> Self {
        Self {
            names: Mutex::new(ExpiringMap::new(NAME_CAPACITY, NAME_FRESH_FOR)),
            memberships: Remembered::new(
                events,
                Topic::Memberships,
                ended_memberships,
                MEMBERSHIP_CAPACITY,
                MEMBERSHIP_FRESH_FOR,
            ),
        }
    }

    /// The room a name key stands for, if remembered.
    pub(crate) fn room_named(&self, key: &str) -> Option<RoomId> {
        lock(&self.names).get(key, Instant::now()).copied()
    }

    /// Remembers the room storage found by this name key.
    pub(crate) fn name_found(&self, key: String, room: RoomId) {
        lock(&self.names).insert(key, room, Instant::now());
    }

    /// Whether the membership may be trusted without asking storage.
    pub(crate) async fn membership(&self, room: RoomId, user: UserId) -> Lookup {
        self.memberships.lookup(&(room, user)).await
    }

    /// Remembers a membership storage just confirmed, unless one may have ended since
    /// `checkpoint`.
    pub(crate) fn member_found(&self, room: RoomId, user: UserId, checkpoint: Checkpoint) {
        self.memberships.remember((room, user), checkpoint);
    }

    /// Forgets the membership at once (the user left here).
    pub(crate) fn member_left(&self, room: RoomId, user: UserId) {
        self.memberships.forget([(room, user)]);
    }

    #[cfg(test)]
    fn names_held(&self) -> usize {
        lock(&self.names).len()
    }

    #[cfg(test)]
    fn memberships_held(&self) -> usize {
        self.memberships.len()
    }
}

/// The membership an announcement ends.
fn ended_memberships(event: &Event) -> Vec<(RoomId, UserId)> {
    match event {
        Event::MembershipEnded { room_id, user_id } => vec![(*room_id, *user_id)],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remembered::test_bus::{Bus, yield_to_tasks};

    async fn following_memory() -> (Bus, RoomMemory) {
        let (bus, events) = Bus::new(Topic::Memberships);
        let memory = RoomMemory::new(events);
        let first = memory.membership(RoomId::generate(), UserId::generate()).await;
        assert_eq!(first, Lookup::Ask(None), "the first use starts following");
        assert_eq!(bus.subscriptions(), 1);
        (bus, memory)
    }

    /// A following memory that has just confirmed ada's membership of a room.
    async fn memory_with_a_member() -> (Bus, RoomMemory, RoomId, UserId) {
        let (bus, memory) = following_memory().await;
        let (room, ada) = (RoomId::generate(), UserId::generate());
        check(&memory, room, ada).await;
        (bus, memory, room, ada)
    }

    /// Looks the membership up and, if asked to check, plays a storage that confirms it.
    async fn check(memory: &RoomMemory, room: RoomId, user: UserId) -> Lookup {
        let lookup = memory.membership(room, user).await;
        if let Lookup::Ask(Some(checkpoint)) = lookup {
            memory.member_found(room, user, checkpoint);
        }
        lookup
    }

    fn asks(lookup: Lookup) -> bool {
        matches!(lookup, Lookup::Ask(Some(_)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_confirmed_membership_is_trusted_until_it_is_no_longer_fresh() {
        let (_bus, memory) = following_memory().await;
        let (room, ada) = (RoomId::generate(), UserId::generate());
        assert!(asks(check(&memory, room, ada).await));
        assert_eq!(check(&memory, room, ada).await, Lookup::Known);
        assert!(asks(memory.membership(room, UserId::generate()).await), "only that user");
        assert!(asks(memory.membership(RoomId::generate(), ada).await), "only that room");

        tokio::time::advance(MEMBERSHIP_FRESH_FOR).await;
        assert!(asks(check(&memory, room, ada).await), "storage is asked again");
        assert_eq!(check(&memory, room, ada).await, Lookup::Known);
    }

    #[tokio::test(start_paused = true)]
    async fn an_announced_leave_is_forgotten_at_once() {
        let (bus, memory) = following_memory().await;
        let (room, ada, bob) = (RoomId::generate(), UserId::generate(), UserId::generate());
        check(&memory, room, ada).await;
        check(&memory, room, bob).await;
        bus.announce_heard(Event::MembershipEnded { room_id: room, user_id: ada }).await;
        assert!(asks(memory.membership(room, ada).await));
        assert_eq!(memory.membership(room, bob).await, Lookup::Known);
    }

    #[tokio::test(start_paused = true)]
    async fn a_leave_here_is_forgotten_at_once() {
        let (_bus, memory, room, ada) = memory_with_a_member().await;
        memory.member_left(room, ada);
        assert!(asks(memory.membership(room, ada).await));
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_raced_a_leave_is_not_remembered() {
        let (bus, memory) = following_memory().await;
        let (room, ada) = (RoomId::generate(), UserId::generate());
        let Lookup::Ask(Some(checkpoint)) = memory.membership(room, ada).await else {
            panic!("asks storage")
        };
        // Storage answered "member", but the user left before the answer was remembered.
        bus.announce_heard(Event::MembershipEnded { room_id: room, user_id: ada }).await;
        memory.member_found(room, ada, checkpoint);
        assert!(asks(memory.membership(room, ada).await));
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_trusted_while_the_bus_is_cut_off_nor_after_it_is_back() {
        let (bus, memory, room, ada) = memory_with_a_member().await;

        bus.set_mark(Bus::CUT_OFF);
        assert_eq!(check(&memory, room, ada).await, Lookup::Ask(None), "cut off: ask, remember nothing");
        bus.set_mark(1);
        assert!(asks(check(&memory, room, ada).await), "back under a new mark: ask again");
        assert_eq!(check(&memory, room, ada).await, Lookup::Known);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lagging_listener_forgets_every_membership() {
        let (bus, memory, room, ada) = memory_with_a_member().await;
        for _ in 0..40 {
            bus.announce(Event::MembershipEnded { room_id: RoomId::generate(), user_id: UserId::generate() });
        }
        yield_to_tasks().await;
        assert!(asks(memory.membership(room, ada).await));
    }

    #[tokio::test(start_paused = true)]
    async fn other_events_forget_nothing() {
        let (bus, memory, room, ada) = memory_with_a_member().await;
        bus.announce_heard(Event::SessionsRevoked { user_id: ada, sessions: Vec::new() }).await;
        assert_eq!(memory.membership(room, ada).await, Lookup::Known);
    }

    #[tokio::test(start_paused = true)]
    async fn memberships_stay_within_their_bound_under_many_rooms() {
        let (_bus, memory) = following_memory().await;
        let ada = UserId::generate();
        for _ in 0..MEMBERSHIP_CAPACITY + 100 {
            check(&memory, RoomId::generate(), ada).await;
        }
        assert_eq!(memory.memberships_held(), MEMBERSHIP_CAPACITY);

        // Rooms nobody reads any more leave as their entries expire.
        tokio::time::advance(MEMBERSHIP_FRESH_FOR).await;
        let (room, bob) = (RoomId::generate(), UserId::generate());
        check(&memory, room, bob).await;
        assert_eq!(memory.memberships_held(), 1);
        assert_eq!(memory.membership(room, bob).await, Lookup::Known);
    }

    #[tokio::test(start_paused = true)]
    async fn names_are_remembered_within_their_bound_and_leave_when_unread() {
        let (_bus, events) = Bus::new(Topic::Memberships);
        let memory = RoomMemory::new(events);
        let general = RoomId::generate();
        assert_eq!(memory.room_named("general"), None);
        memory.name_found("general".to_owned(), general);
        assert_eq!(memory.room_named("general"), Some(general));

        for n in 0..NAME_CAPACITY + 100 {
            memory.name_found(format!("room {n}"), RoomId::generate());
        }
        assert_eq!(memory.names_held(), NAME_CAPACITY);
        assert_eq!(memory.room_named("general"), Some(general), "a full memory keeps what it has");

        tokio::time::advance(NAME_FRESH_FOR).await;
        assert_eq!(memory.room_named("general"), None, "unread for long: looked up again");
        let lounge = RoomId::generate();
        memory.name_found("lounge".to_owned(), lounge);
        assert_eq!(memory.names_held(), 1, "expired names make room");
        assert_eq!(memory.room_named("lounge"), Some(lounge));
    }
}
