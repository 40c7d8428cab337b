//! The order of a room's live events, driven through the in-process event bus over storage that
//! a test controls, on tokio's paused clock: a wait or a read happens at an exact time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use convo_domain::chat::{GAP_WAIT, MAX_EARLY, MockLiveService};
use convo_domain::{
    DomainError, Event, EventBus, Message, MessageContent, MessageId, Resume, ResumeCause, RoomId,
    RoomStream, Topic, UserId, UserRef, Username, lock,
};
use convo_memory::InMemoryEventBus;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The messages storage holds, whether it can be read, and the reads asked of it.
#[derive(Default)]
struct Storage {
    messages: Mutex<Vec<Message>>,
    down: AtomicBool,
    reads: Mutex<Vec<(i64, i64)>>,
}

/// A room followed from its start (after seq 0), on a bus whose subscribers may fall
/// `capacity` events behind.
struct Room {
    id: RoomId,
    bus: Arc<InMemoryEventBus>,
    storage: Arc<Storage>,
    stream: RoomStream,
}

impl Room {
    async fn new(capacity: usize) -> Self {
        let id = RoomId::generate();
        let bus = Arc::new(InMemoryEventBus::new(capacity));
        let storage = Arc::new(Storage::default());
        let mut live = MockLiveService::new();
        let reader = Arc::clone(&storage);
        live.expect_messages_between().returning(move |room, after, before| {
            assert_eq!(room, id);
            lock(&reader.reads).push((after, before));
            if reader.down.load(Ordering::SeqCst) {
                return Err(DomainError::unavailable("database", "down"));
            }
            Ok(lock(&reader.messages).iter().filter(|m| m.seq > after && m.seq < before).cloned().collect())
        });
        let events = bus.subscribe(Topic::Room(id)).await.expect("subscribed");
        let stream = RoomStream::new(id, events, 0, Arc::new(live));
        Self { id, bus, storage, stream }
    }

    fn message(&self, seq: i64) -> Message {
        Message {
            id: MessageId::generate(),
            room_id: self.id,
            seq,
            author: UserRef { id: UserId::generate(), username: Username::parse("someone").expect("name") },
            content: MessageContent::parse(&format!("message {seq}")).expect("content"),
            created_at: Utc::now(),
            edited_at: None,
            client_message_id: None,
        }
    }

    /// Messages `seqs`, as storage holds them.
    fn store(&self, seqs: impl IntoIterator<Item = i64>) -> Vec<Message> {
        let messages: Vec<Message> = seqs.into_iter().map(|seq| self.message(seq)).collect();
        lock(&self.storage.messages).extend(messages.iter().cloned());
        messages
    }

    async fn publish(&self, event: Event) {
        self.bus.publish(event).await.expect("published");
    }

    async fn post(&self, message: &Message) {
        self.publish(Event::MessageCreated(message.clone())).await;
    }

    fn reads(&self) -> Vec<(i64, i64)> {
        lock(&self.storage.reads).clone()
    }

    /// Drives the stream in a task of its own, which reports each outcome and when it came
    /// (since now); the task ends after the first [`Resume`].
    fn drive(self) -> (Deliveries, Arc<InMemoryEventBus>, Arc<Storage>) {
        let Self { bus, storage, mut stream, .. } = self;
        let (sender, outcomes) = mpsc::unbounded_channel();
        let start = Instant::now();
        tokio::spawn(async move {
            loop {
                let outcome = stream.next().await;
                let ended = outcome.is_err();
                if sender.send((start.elapsed(), outcome)).is_err() || ended {
                    break;
                }
            }
        });
        (Deliveries { outcomes }, bus, storage)
    }
}

struct Deliveries {
    outcomes: mpsc::UnboundedReceiver<(Duration, Result<Event, Resume>)>,
}

impl Deliveries {
    /// The next `count` events, each labelled, with when it came.
    async fn take(&mut self, count: usize) -> Vec<(String, Duration)> {
        let mut taken = Vec::new();
        while taken.len() < count {
            let (at, outcome) = self.outcomes.recv().await.expect("the stream goes on");
            let event = outcome.unwrap_or_else(|resume| panic!("the stream ended early: {resume:?}"));
            taken.push((label(&event), at));
        }
        taken
    }

    async fn labels(&mut self, count: usize) -> Vec<String> {
        self.take(count).await.into_iter().map(|(label, _)| label).collect()
    }
}

/// A message as its seq, a change as what it does to which seq, anything else as its kind.
fn label(event: &Event) -> String {
    match event {
        Event::MessageCreated(message) => message.seq.to_string(),
        Event::MessageEdited(message) => format!("edit {}", message.seq),
        Event::MessageDeleted { seq, .. } => format!("delete {seq}"),
        Event::MemberJoined { .. } => "joined".to_owned(),
        Event::MemberLeft { .. } => "left".to_owned(),
        Event::Typing { .. } => "typing".to_owned(),
        Event::Presence { .. } => "presence".to_owned(),
        Event::MembershipEnded { .. } => "ended".to_owned(),
        Event::SessionsRevoked { .. } => "revoked".to_owned(),
    }
}

fn edited(message: &Message) -> Event {
    let mut edited = message.clone();
    edited.content = MessageContent::parse("edited").expect("content");
    edited.edited_at = Some(Utc::now());
    Event::MessageEdited(edited)
}

fn deleted(message: &Message) -> Event {
    Event::MessageDeleted { room_id: message.room_id, message_id: message.id, seq: message.seq }
}

fn someone() -> UserRef {
    UserRef { id: UserId::generate(), username: Username::parse("typist").expect("name") }
}

#[tokio::test(start_paused = true)]
async fn messages_in_order_go_out_at_once_without_reading_storage() {
    let room = Room::new(64).await;
    let messages = room.store(1..=3);
    for message in &messages {
        room.post(message).await;
    }
    // A duplicate publish of a message already given is not given again.
    room.post(&messages[1]).await;
    room.post(&room.message(4)).await;
    let storage = Arc::clone(&room.storage);
    let (mut deliveries, _bus, _) = room.drive();

    let taken = deliveries.take(4).await;
    assert_eq!(taken.iter().map(|(label, _)| label.as_str()).collect::<Vec<_>>(), ["1", "2", "3", "4"]);
    assert!(taken.iter().all(|(_, at)| at.is_zero()));
    assert!(lock(&storage.reads).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_lost_message_in_a_busy_room_is_read_from_storage_within_the_gap_wait() {
    let room = Room::new(64).await;
    let messages = room.store(1..=8);
    let (mut deliveries, bus, storage) = room.drive();

    // The publish of seq 1 was lost; the room keeps publishing every 100 ms, more often than
    // the gap wait, which must not start over with each event.
    let publisher = tokio::spawn(async move {
        for message in &messages[1..] {
            bus.publish(Event::MessageCreated(message.clone())).await.expect("published");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let taken = deliveries.take(8).await;
    publisher.await.expect("published all");

    let labels: Vec<&str> = taken.iter().map(|(label, _)| label.as_str()).collect();
    assert_eq!(labels, ["1", "2", "3", "4", "5", "6", "7", "8"]);
    assert_eq!(taken[0].1, GAP_WAIT, "read once the gap first seen has waited GAP_WAIT");
    assert_eq!(lock(&storage.reads).as_slice(), [(0, 2)], "exactly the gap is read");
}

#[tokio::test(start_paused = true)]
async fn a_gap_that_cannot_be_read_ends_the_stream_with_where_to_resume_and_is_never_skipped() {
    let mut room = Room::new(64).await;
    let messages = room.store(1..=4);
    room.storage.down.store(true, Ordering::SeqCst);
    room.post(&messages[0]).await;
    // Seq 2 is lost.
    room.post(&messages[2]).await;
    room.post(&messages[3]).await;

    let start = Instant::now();
    assert_eq!(room.stream.next().await.map(|event| label(&event)), Ok("1".to_owned()));
    let resume = Resume { after_seq: 1, cause: ResumeCause::GapUnreadable };
    assert_eq!(room.stream.next().await, Err(resume));
    assert_eq!(start.elapsed(), GAP_WAIT);
    assert_eq!(room.reads(), [(1, 3)]);

    // Storage is back, more events come: the stream stays ended rather than skip ahead.
    room.storage.down.store(false, Ordering::SeqCst);
    room.post(&room.message(5)).await;
    assert_eq!(room.stream.next().await, Err(resume));
    assert_eq!(room.stream.after_seq(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_edit_and_a_deletion_that_arrive_before_their_message_follow_it() {
    let room = Room::new(64).await;
    let messages = room.store(1..=3);
    room.publish(edited(&messages[0])).await;
    room.publish(deleted(&messages[1])).await;
    for message in &messages {
        room.post(message).await;
    }
    let (mut deliveries, _bus, storage) = room.drive();

    assert_eq!(deliveries.labels(5).await, ["1", "edit 1", "2", "delete 2", "3"]);
    assert!(lock(&storage.reads).is_empty(), "nothing was missing");
}

#[tokio::test(start_paused = true)]
async fn an_edit_and_a_deletion_of_lost_messages_wait_for_them_to_be_read() {
    let room = Room::new(64).await;
    // Seq 1 was edited and seq 2 deleted before their publishes got here, which were lost.
    let first = room.store([1]).remove(0);
    let gone = room.message(2);
    let third = room.store([3]).remove(0);
    room.publish(edited(&first)).await;
    room.publish(deleted(&gone)).await;
    room.post(&third).await;
    let (mut deliveries, _bus, storage) = room.drive();

    let taken = deliveries.take(4).await;
    let labels: Vec<&str> = taken.iter().map(|(label, _)| label.as_str()).collect();
    assert_eq!(labels, ["1", "edit 1", "delete 2", "3"]);
    // Both gaps were seen at once, so neither waits longer than GAP_WAIT.
    assert!(taken.iter().all(|(_, at)| *at == GAP_WAIT), "{taken:?}");
    assert_eq!(lock(&storage.reads).as_slice(), [(0, 2), (1, 3)]);
}

#[tokio::test(start_paused = true)]
async fn changes_to_messages_already_given_go_out_at_once_even_behind_a_gap() {
    let room = Room::new(64).await;
    let messages = room.store(1..=3);
    room.post(&messages[0]).await;
    // Seq 2 is lost; 3 waits for it, while a change to 1 need not.
    room.post(&messages[2]).await;
    room.publish(edited(&messages[0])).await;
    room.publish(deleted(&messages[0])).await;
    let (mut deliveries, _bus, _) = room.drive();

    let taken = deliveries.take(5).await;
    let labels: Vec<&str> = taken.iter().map(|(label, _)| label.as_str()).collect();
    assert_eq!(labels, ["1", "edit 1", "delete 1", "2", "3"]);
    assert!(taken[..3].iter().all(|(_, at)| at.is_zero()));
    assert_eq!(taken[3].1, GAP_WAIT);
}

#[tokio::test(start_paused = true)]
async fn membership_typing_and_presence_flow_while_a_gap_is_pending() {
    let room = Room::new(64).await;
    let messages = room.store(1..=2);
    // Seq 1 is lost.
    room.post(&messages[1]).await;
    room.publish(Event::Typing { room_id: room.id, user: someone() }).await;
    room.publish(Event::MemberJoined { room_id: room.id, user: someone() }).await;
    room.publish(Event::Presence { room_id: room.id, user: someone(), online: true }).await;
    room.publish(Event::MemberLeft { room_id: room.id, user: someone() }).await;
    let (mut deliveries, _bus, _) = room.drive();

    let taken = deliveries.take(6).await;
    let labels: Vec<&str> = taken.iter().map(|(label, _)| label.as_str()).collect();
    assert_eq!(labels, ["typing", "joined", "presence", "left", "1", "2"]);
    assert!(taken[..4].iter().all(|(_, at)| at.is_zero()), "not held behind the gap: {taken:?}");
    assert_eq!(taken[4].1, GAP_WAIT);
}

#[tokio::test(start_paused = true)]
async fn at_most_max_early_events_wait_for_a_gap_then_it_is_read_at_once() {
    let last = MAX_EARLY as i64 + 1;
    for (held, read_after) in [(MAX_EARLY - 1, GAP_WAIT), (MAX_EARLY, Duration::ZERO)] {
        let room = Room::new(4 * MAX_EARLY).await;
        let messages = room.store(1..=last);
        // Seq 1 is lost; `held` events past it arrive all at once.
        for message in &messages[1..=held] {
            room.post(message).await;
        }
        let (mut deliveries, _bus, storage) = room.drive();

        let taken = deliveries.take(held + 1).await;
        assert_eq!(taken[0], ("1".to_owned(), read_after), "with {held} held");
        let seqs: Vec<String> = taken.into_iter().map(|(label, _)| label).collect();
        let expected: Vec<String> = (1..=held as i64 + 1).map(|seq| seq.to_string()).collect();
        assert_eq!(seqs, expected);
        assert_eq!(lock(&storage.reads).as_slice(), [(0, 2)]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_lagging_feed_reads_what_it_missed_from_storage_and_gives_each_message_once() {
    let room = Room::new(4).await;
    let messages = room.store(1..=10);
    for message in &messages {
        room.post(message).await;
    }
    let (mut deliveries, bus, storage) = room.drive();

    let expected: Vec<String> = (1..=10).map(|seq: i64| seq.to_string()).collect();
    assert_eq!(deliveries.labels(10).await, expected);
    assert_eq!(lock(&storage.reads).as_slice(), [(0, i64::MAX)]);
    // The messages still in the feed were duplicates: the next one is new.
    let eleventh = Event::MessageCreated(Message { seq: 11, ..messages[0].clone() });
    bus.publish(eleventh).await.expect("published");
    assert_eq!(deliveries.labels(1).await, ["11"]);
}

#[tokio::test(start_paused = true)]
async fn a_feed_that_ends_tells_where_to_resume_after_what_went_out() {
    let room = Room::new(64).await;
    let messages = room.store(1..=3);
    room.post(&messages[0]).await;
    // Seq 2 is lost; 3 waits for it when the feed ends.
    room.post(&messages[2]).await;
    let Room { bus, mut stream, .. } = room;
    drop(bus);

    assert_eq!(stream.next().await.map(|event| label(&event)), Ok("1".to_owned()));
    let resume = Resume { after_seq: 1, cause: ResumeCause::FeedEnded };
    assert_eq!(stream.next().await, Err(resume));
    assert_eq!(stream.next().await, Err(resume), "and stays ended");
}
