//! Group commit: the sends to one room, from every request and connection of this instance,
//! are queued in the room's sequencer and stored a batch at a time, one transaction per batch.
//!
//! A room's worker takes whatever queued while its previous batch was being stored (up to
//! [`MAX_BATCH`]) and hands the batch to [`MessageRepository::insert_batch`]; the room's
//! reporter then reports the stored messages to the cache, answers each send (so a sender that
//! reads the room once answered finds its message) and announces them on the event bus, while
//! the worker stores the next batch. The announcement, which only live subscribers wait for,
//! stays off the answer's path; a connection that sent a message holds the message's broadcast
//! until its own ack anyway. Storage assigns
//! seqs in batch order and batches one after another, so one sender's messages keep the order
//! they were queued in. The room's tasks own the effects that follow a commit: a request that is
//! cancelled once its send is queued still has its message stored, cached and announced.
//!
//! A worker that has nothing to do for [`IDLE`] retires, so quiet rooms cost nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::error::{DomainError, DomainResult};
use crate::event::{Event, EventBus};
use crate::id::{RoomId, UserId};
use crate::message::{Message, MessageCache, MessageRepository, NewMessage, Posted};
use crate::rate_limit::{RateDecision, RateLimit, RateLimiter};
use crate::room::{Membership, RoomRepository};
use crate::sync::lock;

/// The most sends stored in one transaction.
pub const MAX_BATCH: usize = 256;
/// Sends queued per room beyond the batch being stored; past this, senders wait their turn.
const QUEUE: usize = 4 * MAX_BATCH;
/// A room's worker retires after this long with nothing to store.
const IDLE: Duration = Duration::from_secs(10);

/// A send queued in its room's sequencer. [`QueuedSend::stored`] resolves once its batch is
/// committed and cached (its announcement follows); dropping it does not withdraw the send.
#[derive(Debug)]
pub struct QueuedSend(Outcome);

#[derive(Debug)]
enum Outcome {
    Known(DomainResult<Posted>),
    Pending(oneshot::Receiver<DomainResult<Posted>>),
}

impl QueuedSend {
    /// A send whose outcome was known without queuing it (a retry answered from storage, for
    /// instance), or a stand-in in tests.
    pub fn known(outcome: DomainResult<Posted>) -> Self {
        Self(Outcome::Known(outcome))
    }

    /// The stored message (`created: false` for a retry), or why it was refused.
    pub async fn stored(self) -> DomainResult<Posted> {
        match self.0 {
            Outcome::Known(outcome) => outcome,
            Outcome::Pending(receiver) => receiver.await.unwrap_or_else(|_| {
                Err(DomainError::internal("a room's sequencer stopped before answering"))
            }),
        }
    }
}

/// What the sequencer counts against, writes to and tells.
#[derive(Clone)]
pub(super) struct SequencerPorts {
    pub(super) limiter: Arc<dyn RateLimiter>,
    /// Messages per author per window, REST and WebSocket together.
    pub(super) send_limit: RateLimit,
    pub(super) messages: Arc<dyn MessageRepository>,
    pub(super) cache: Arc<dyn MessageCache>,
    pub(super) events: Arc<dyn EventBus>,
    /// Asked only about the authors of sends over their limit.
    pub(super) rooms: Arc<dyn RoomRepository>,
}

/// How a worker's verdict on each stored message is turned into the send's answer (a retry
/// whose key was used in another room is refused, for instance).
pub(super) type Verdict = fn(Posted, RoomId) -> DomainResult<Posted>;

/// The per-room queues of this instance.
pub(super) struct Sequencer {
    ports: SequencerPorts,
    verdict: Verdict,
    rooms: Mutex<HashMap<RoomId, Worker>>,
    next_worker: AtomicU64,
}

/// A room's running worker: its queue, and a number telling it apart from a successor.
struct Worker {
    id: u64,
    queue: mpsc::Sender<Pending>,
}

struct Pending {
    message: NewMessage,
    answer: oneshot::Sender<DomainResult<Posted>>,
}

impl Sequencer {
    pub(super) fn new(ports: SequencerPorts, verdict: Verdict) -> Arc<Self> {
        Arc::new(Self { ports, verdict, rooms: Mutex::new(HashMap::new()), next_worker: AtomicU64::new(0) })
    }

    /// Messages per author per window, REST and WebSocket together.
    pub(super) fn send_limit(&self) -> RateLimit {
        self.ports.send_limit
    }

    /// Queues the message behind every send queued before it to its room. Waits only while
    /// the room's queue is full.
    pub(super) async fn enqueue(self: &Arc<Self>, message: NewMessage) -> DomainResult<QueuedSend> {
        let room = message.room_id;
        let (answer, receiver) = oneshot::channel();
        let mut pending = Pending { message, answer };
        // A worker only stops while nobody holds its queue, so a second try is for a worker
        // that died (a panic, or a runtime shutting down).
        for _ in 0..2 {
            let queue = self.queue(room);
            match queue.send(pending).await {
                Ok(()) => return Ok(QueuedSend(Outcome::Pending(receiver))),
                Err(mpsc::error::SendError(back)) => pending = back,
            }
        }
        Err(DomainError::internal("a room's sequencer is not running"))
    }

    /// The room's queue, starting its worker if it has none.
    fn queue(self: &Arc<Self>, room: RoomId) -> mpsc::Sender<Pending> {
        let mut rooms = lock(&self.rooms);
        if let Some(worker) = rooms.get(&room)
            && !worker.queue.is_closed()
        {
            return worker.queue.clone();
        }
        let id = self.next_worker.fetch_add(1, Ordering::Relaxed);
        let (queue, receiver) = mpsc::channel(QUEUE);
        rooms.insert(room, Worker { id, queue: queue.clone() });
        tokio::spawn(Arc::clone(self).run(room, id, receiver));
        queue
    }

    /// The room's worker. It takes whatever queued while it stored the previous batch, counts
    /// it against the authors' limits and stores it in one transaction, then hands it to the
    /// room's reporter, a task of its own that caches what was stored, answers, then announces
    /// it. So the next batch is being stored while the last one is reported; the
    /// reporter takes batches in order and at most one waits for it.
    async fn run(self: Arc<Self>, room: RoomId, id: u64, mut queue: mpsc::Receiver<Pending>) {
        let (to_reporter, stored) = mpsc::channel(1);
        tokio::spawn(Arc::clone(&self).report_each(room, stored));
        loop {
            let mut sends = Vec::with_capacity(MAX_BATCH);
            match tokio::time::timeout(IDLE, queue.recv()).await {
                Ok(Some(first)) => sends.push(first),
                Ok(None) => return,
                Err(_idle) if self.retire(room, id, &queue) => return,
                Err(_idle) => continue,
            }
            while sends.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(pending) => sends.push(pending),
                    Err(_) => break,
                }
            }
            let mut batch = self.count(room, sends).await;
            self.insert(room, &mut batch).await;
            if to_reporter.send(batch).await.is_err() {
                // The reporter is gone (a panic): the queued sends go to a new worker.
                return;
            }
        }
    }

    async fn report_each(self: Arc<Self>, room: RoomId, mut stored: mpsc::Receiver<Batch>) {
        while let Some(batch) = stored.recv().await {
            self.report(room, batch).await;
        }
    }

    /// Whether the worker may stop: nothing is queued and no sender holds its queue. Senders
    /// take the queue under the same lock, so none can be on its way in.
    fn retire(&self, room: RoomId, id: u64, queue: &mpsc::Receiver<Pending>) -> bool {
        let mut rooms = lock(&self.rooms);
        match rooms.get(&room) {
            Some(worker) if worker.id == id => {
                if worker.queue.strong_count() > 1 || !queue.is_empty() {
                    return false;
                }
                rooms.remove(&room);
                true
            }
            // Replaced: the room's sends go to the successor.
            _ => true,
        }
    }

    /// Counts each author's sends of the batch against their limit at once (in queue order, so
    /// an author's first sends take the points left). A send over its limit is refused here.
    async fn count(&self, room: RoomId, sends: Vec<Pending>) -> Batch {
        let count = sends.len();
        let keys: Vec<String> = sends.iter().map(|send| send_key(send.message.author_id)).collect();
        let mut batch = Batch { sends, outcomes: Vec::with_capacity(count), charged: vec![false; count] };
        match self.ports.limiter.acquire_each(&keys, self.ports.send_limit).await {
            Ok(decisions) if decisions.len() == count => {
                for (decision, charged) in decisions.into_iter().zip(&mut batch.charged) {
                    batch.outcomes.push(match decision {
                        RateDecision::Allowed { .. } => {
                            *charged = true;
                            None
                        }
                        RateDecision::Limited { retry_after } => {
                            Some(Err(DomainError::RateLimited { retry_after }))
                        }
                    });
                }
                self.refuse_outsiders_over_their_limit(room, &mut batch).await;
            }
            Ok(_) => {
                let error = DomainError::internal("the rate limiter answered for the wrong number of sends");
                batch.fail_all(&error);
            }
            Err(error) => {
                tracing::warn!(%error, sends = count, "could not count a batch of sends");
                batch.fail_all(&error);
            }
        }
        batch
    }

    /// A send over its limit from someone who may not send to the room at all is refused for
    /// that instead: the room is judged before the rate limit, so a stranger is told 403 (or
    /// 404) however many sends he made elsewhere. Storage is asked only about these authors,
    /// and if it cannot answer, the refusal stays the rate limit's.
    async fn refuse_outsiders_over_their_limit(&self, room: RoomId, batch: &mut Batch) {
        // Each author over the limit is looked up once per batch; `None` if storage failed.
        let mut found: HashMap<UserId, Option<Membership>> = HashMap::new();
        for (send, outcome) in batch.sends.iter().zip(&mut batch.outcomes) {
            if !matches!(outcome, Some(Err(DomainError::RateLimited { .. }))) {
                continue;
            }
            let author = send.message.author_id;
            let membership = match found.get(&author) {
                Some(membership) => *membership,
                None => {
                    let membership = self.ports.rooms.membership(room, author).await.ok();
                    found.insert(author, membership);
                    membership
                }
            };
            match membership {
                Some(Membership::Outsider) => *outcome = Some(Err(DomainError::NotAMember)),
                Some(Membership::NoSuchRoom) => *outcome = Some(Err(DomainError::RoomNotFound)),
                Some(Membership::Member) | None => {}
            }
        }
    }

    /// Stores the batch's sends that are still undecided in one transaction.
    async fn insert(&self, room: RoomId, batch: &mut Batch) {
        let allowed: Vec<NewMessage> = batch.undecided().map(|send| send.message.clone()).collect();
        if allowed.is_empty() {
            return;
        }
        let stored = match self.ports.messages.insert_batch(room, &allowed).await {
            Ok(stored) if stored.len() == allowed.len() => stored,
            Ok(_) => {
                let error =
                    DomainError::internal("storage answered a batch with the wrong number of outcomes");
                tracing::error!(%error, "a batch of sends failed");
                fail_all(allowed.len(), &error)
            }
            Err(error) => {
                tracing::warn!(%error, sends = allowed.len(), "a batch of sends failed");
                fail_all(allowed.len(), &error)
            }
        };
        let mut stored = stored.into_iter();
        for outcome in batch.outcomes.iter_mut().filter(|outcome| outcome.is_none()) {
            *outcome = stored.next();
        }
    }

    /// Caches what the batch stored, answers every send of the batch, then announces what was
    /// stored. The refused sends whose points go back are answered last.
    async fn report(&self, room: RoomId, batch: Batch) {
        let outcomes: Vec<DomainResult<Posted>> = batch
            .outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| Err(DomainError::internal("a send of a batch went unanswered")))
            })
            .collect();
        let created: Vec<Message> = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                Ok(posted) if posted.created => Some(posted.message.clone()),
                _ => None,
            })
            .collect();
        // Stored already, so a failure here is logged, not reported as a failed send.
        if !created.is_empty()
            && let Err(error) = self.ports.cache.messages_stored(room, &created).await
        {
            tracing::warn!(%error, "could not cache new messages");
        }

        let mut refused = Vec::new();
        for ((send, outcome), charged) in batch.sends.into_iter().zip(outcomes).zip(batch.charged) {
            if charged && matches!(outcome, Err(DomainError::NotAMember | DomainError::RoomNotFound)) {
                refused.push((send, outcome));
                continue;
            }
            // A sender that went away still had its message stored and announced.
            let _ = send.answer.send(outcome.and_then(|posted| (self.verdict)(posted, room)));
        }
        if !created.is_empty() {
            let events = created.into_iter().map(Event::MessageCreated).collect();
            if let Err(error) = self.ports.events.publish_all(events).await {
                tracing::warn!(%error, "could not publish new messages");
            }
        }
        // A send refused for its room (not a member, no such room) was counted before storage
        // could judge it, and a refusal must not cost its author a point: the point goes back
        // before the answer, so a sender told 403 or 404 never meets a 429 it did not earn.
        for (send, outcome) in refused {
            if let Err(error) = self.ports.limiter.release(&send_key(send.message.author_id)).await {
                tracing::warn!(%error, "could not give back the point of a refused send");
            }
            let _ = send.answer.send(outcome);
        }
    }
}

/// A batch on its way through a room's stages: its sends in queue order, each one's outcome
/// once decided (`None` while it is still to be stored), and whether it took a point of its
/// author's limit.
struct Batch {
    sends: Vec<Pending>,
    outcomes: Vec<Option<DomainResult<Posted>>>,
    charged: Vec<bool>,
}

impl Batch {
    /// The sends still to be stored.
    fn undecided(&self) -> impl Iterator<Item = &Pending> {
        self.sends.iter().zip(&self.outcomes).filter(|(_, outcome)| outcome.is_none()).map(|(send, _)| send)
    }

    fn fail_all(&mut self, error: &DomainError) {
        self.outcomes = fail_all(self.sends.len(), error).into_iter().map(Some).collect();
    }
}

/// The rate limit's key for an author's sends.
fn send_key(author: UserId) -> String {
    format!("send:{author}")
}

/// The same failure for each of `count` sends.
fn fail_all(count: usize, error: &DomainError) -> Vec<DomainResult<Posted>> {
    (0..count).map(|_| Err(copy_of(error))).collect()
}

/// The same failure for every send of a batch that failed as a whole.
fn copy_of(error: &DomainError) -> DomainError {
    match error {
        DomainError::Unavailable { what, source } => DomainError::unavailable(what, source.to_string()),
        other => DomainError::internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use mockall::predicate::eq;

    use super::*;
    use crate::chat::test_support::{Mocks, message};
    use crate::chat::{MessageService, RoomRef};
    use crate::error::Field;
    use crate::id::UserId;
    use crate::message::{ClientMessageId, MessageContent};
    use crate::rate_limit::RateDecision;

    fn allow_every_send(mocks: &mut Mocks) {
        mocks
            .limiter
            .expect_acquire_each()
            .returning(|keys, _| Ok(keys.iter().map(|_| RateDecision::Allowed { remaining: 1 }).collect()));
    }

    fn content(text: &str) -> MessageContent {
        MessageContent::parse(text).unwrap()
    }

    /// What storage answers for a batch: each message stored with the next seq from `first`.
    fn stored_from(first: i64, batch: &[NewMessage]) -> Vec<DomainResult<Posted>> {
        (first..)
            .zip(batch)
            .map(|(seq, new)| {
                let mut message = message(new.room_id, new.author_id, seq);
                message.id = new.id;
                message.content = new.content.clone();
                Ok(Posted { message, created: true })
            })
            .collect()
    }

    #[tokio::test]
    async fn sends_queued_while_the_worker_is_busy_are_stored_in_one_batch_in_queue_order() {
        let (room, author) = (RoomId::generate(), UserId::generate());
        let mut mocks = Mocks::new();
        allow_every_send(&mut mocks);
        mocks
            .messages
            .expect_insert_batch()
            .withf(move |in_room, batch| {
                let contents: Vec<&str> = batch.iter().map(|new| new.content.as_str()).collect();
                *in_room == room && contents == ["0", "1", "2", "3", "4"]
            })
            .times(1)
            .returning(|_, batch| Ok(stored_from(1, batch)));
        mocks
            .cache
            .expect_messages_stored()
            .withf(|_, messages| messages.iter().map(|m| m.seq).eq(1..=5))
            .times(1)
            .returning(|_, _| Ok(()));
        mocks.events.expect_publish_all().withf(|events| events.len() == 5).times(1).returning(|_| Ok(()));
        let service = mocks.service();

        // On this single-threaded runtime the worker runs only once the test waits, so all five
        // are queued by then.
        let mut queued = Vec::new();
        for n in 0..5 {
            queued.push(
                service.enqueue(author, &RoomRef::Id(room), content(&n.to_string()), None).await.unwrap(),
            );
        }
        for (expected_seq, send) in (1..).zip(queued) {
            assert_eq!(send.stored().await.unwrap().message.seq, expected_seq);
        }
    }

    #[tokio::test]
    async fn one_refused_send_fails_alone_and_only_stored_messages_are_cached_and_announced() {
        let (room, author) = (RoomId::generate(), UserId::generate());
        let elsewhere = message(RoomId::generate(), author, 9);
        let earlier = message(room, author, 1);
        let mut mocks = Mocks::new();
        allow_every_send(&mut mocks);
        let (from_elsewhere, from_earlier) = (elsewhere.clone(), earlier.clone());
        mocks.messages.expect_insert_batch().times(1).returning(move |_, batch| {
            let mut outcomes = stored_from(2, &batch[..1]);
            outcomes.push(Err(DomainError::NotAMember));
            outcomes.push(Ok(Posted { message: from_earlier.clone(), created: false }));
            outcomes.push(Ok(Posted { message: from_elsewhere.clone(), created: false }));
            Ok(outcomes)
        });
        // The refused send's point, and only its, goes back.
        let key = format!("send:{author}");
        mocks.limiter.expect_release().withf(move |released| released == key).times(1).returning(|_| Ok(()));
        mocks
            .cache
            .expect_messages_stored()
            .withf(|_, messages| messages.iter().map(|m| m.seq).eq([2]))
            .times(1)
            .returning(|_, _| Ok(()));
        mocks.events.expect_publish_all().withf(|events| events.len() == 1).times(1).returning(|_| Ok(()));
        let service = mocks.service();

        let mut queued = Vec::new();
        for n in 0..4 {
            let key = ClientMessageId::parse(&format!("k{n}")).unwrap();
            queued.push(service.enqueue(author, &RoomRef::Id(room), content("hi"), Some(key)).await.unwrap());
        }
        let mut outcomes = Vec::new();
        for send in queued {
            outcomes.push(send.stored().await);
        }
        assert!(matches!(&outcomes[0], Ok(posted) if posted.created && posted.message.seq == 2));
        assert!(matches!(&outcomes[1], Err(DomainError::NotAMember)), "{:?}", outcomes[1]);
        assert!(matches!(&outcomes[2], Ok(posted) if !posted.created && posted.message == earlier));
        assert!(
            matches!(&outcomes[3], Err(DomainError::Validation(v)) if v.field == Field::ClientMessageId),
            "{:?}",
            outcomes[3]
        );
    }

    #[tokio::test]
    async fn a_send_over_its_authors_limit_is_refused_alone_and_takes_no_seq() {
        let room = RoomId::generate();
        let mut mocks = Mocks::new();
        mocks.limiter.expect_acquire_each().times(1).returning(|keys, _| {
            assert_eq!(keys.len(), 3, "one decision for the whole batch");
            Ok(vec![
                RateDecision::Allowed { remaining: 1 },
                RateDecision::Limited { retry_after: Duration::from_secs(4) },
                RateDecision::Allowed { remaining: 0 },
            ])
        });
        mocks
            .messages
            .expect_insert_batch()
            .withf(|_, batch| batch.iter().map(|new| new.content.as_str()).eq(["0", "2"]))
            .times(1)
            .returning(|_, batch| Ok(stored_from(1, batch)));
        mocks.cache.expect_messages_stored().times(1).returning(|_, _| Ok(()));
        mocks.events.expect_publish_all().times(1).returning(|_| Ok(()));
        // Only the author over the limit is looked up, and is a member.
        mocks.rooms.expect_membership().times(1).returning(|_, _| Ok(Membership::Member));
        let service = mocks.service();

        let mut queued = Vec::new();
        for n in 0..3 {
            let author = UserId::generate();
            queued.push(
                service.enqueue(author, &RoomRef::Id(room), content(&n.to_string()), None).await.unwrap(),
            );
        }
        let mut outcomes = Vec::new();
        for send in queued {
            outcomes.push(send.stored().await);
        }
        assert!(matches!(&outcomes[0], Ok(posted) if posted.message.seq == 1));
        assert!(
            matches!(outcomes[1], Err(DomainError::RateLimited { retry_after }) if retry_after == Duration::from_secs(4))
        );
        assert!(matches!(&outcomes[2], Ok(posted) if posted.message.seq == 2));
    }

    #[tokio::test]
    async fn a_stranger_over_his_limit_is_told_he_is_not_a_member_and_gets_nothing_back() {
        let room = RoomId::generate();
        let mut mocks = Mocks::new();
        mocks.limiter.expect_acquire_each().times(1).returning(|keys, _| {
            Ok(keys.iter().map(|_| RateDecision::Limited { retry_after: Duration::from_secs(4) }).collect())
        });
        mocks.rooms.expect_membership().times(1..=2).returning(|_, _| Ok(Membership::Outsider));
        // Nothing to store, and no point to give back: none was taken.
        mocks.messages.expect_insert_batch().never();
        mocks.limiter.expect_release().never();
        let service = mocks.service();
        let stranger = UserId::generate();
        let first = service.enqueue(stranger, &RoomRef::Id(room), content("a"), None).await.unwrap();
        let second = service.enqueue(stranger, &RoomRef::Id(room), content("b"), None).await.unwrap();
        assert!(matches!(first.stored().await, Err(DomainError::NotAMember)));
        assert!(matches!(second.stored().await, Err(DomainError::NotAMember)));
    }

    #[tokio::test]
    async fn a_batch_that_fails_as_a_whole_fails_every_send_and_announces_nothing() {
        let room = RoomId::generate();
        let mut mocks = Mocks::new();
        allow_every_send(&mut mocks);
        mocks
            .messages
            .expect_insert_batch()
            .times(1)
            .returning(|_, _| Err(DomainError::unavailable("database", "connection refused")));
        mocks.cache.expect_messages_stored().never();
        mocks.events.expect_publish_all().never();
        let service = mocks.service();

        let first =
            service.enqueue(UserId::generate(), &RoomRef::Id(room), content("a"), None).await.unwrap();
        let second =
            service.enqueue(UserId::generate(), &RoomRef::Id(room), content("b"), None).await.unwrap();
        for send in [first, second] {
            let error = send.stored().await.unwrap_err();
            assert!(matches!(error, DomainError::Unavailable { what: "database", .. }), "{error:?}");
        }
    }

    #[tokio::test]
    async fn a_send_nobody_waits_for_is_still_stored_cached_and_announced() {
        let room = RoomId::generate();
        let announced = Arc::new(AtomicBool::new(false));
        let mut mocks = Mocks::new();
        allow_every_send(&mut mocks);
        mocks.messages.expect_insert_batch().times(1).returning(|_, batch| Ok(stored_from(1, batch)));
        mocks.cache.expect_messages_stored().times(1).returning(|_, _| Ok(()));
        let flag = Arc::clone(&announced);
        mocks.events.expect_publish_all().times(1).returning(move |_| {
            flag.store(true, Ordering::SeqCst);
            Ok(())
        });
        let service = mocks.service();

        // The request is cancelled right after its send was queued.
        drop(service.enqueue(UserId::generate(), &RoomRef::Id(room), content("a"), None).await.unwrap());
        tokio::time::timeout(Duration::from_secs(5), async {
            while !announced.load(Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the worker stores and announces the abandoned send");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_worker_retires_and_a_later_send_starts_a_new_one() {
        let room = RoomId::generate();
        let mut messages = crate::message::MockMessageRepository::new();
        messages.expect_insert_batch().times(2).returning(|_, batch| Ok(stored_from(1, batch)));
        let mut cache = crate::message::MockMessageCache::new();
        cache.expect_messages_stored().with(eq(room), mockall::predicate::always()).returning(|_, _| Ok(()));
        let mut events = crate::event::MockEventBus::new();
        events.expect_publish_all().returning(|_| Ok(()));
        let mut limiter = crate::rate_limit::MockRateLimiter::new();
        limiter
            .expect_acquire_each()
            .returning(|keys, _| Ok(vec![RateDecision::Allowed { remaining: 1 }; keys.len()]));
        let sequencer = Sequencer::new(
            SequencerPorts {
                limiter: Arc::new(limiter),
                send_limit: RateLimit { points: 5, window: IDLE },
                messages: Arc::new(messages),
                cache: Arc::new(cache),
                events: Arc::new(events),
                rooms: Arc::new(crate::room::MockRoomRepository::new()),
            },
            |posted, _| Ok(posted),
        );
        let new = |content: &str| NewMessage {
            id: crate::id::MessageId::generate(),
            room_id: room,
            author_id: UserId::generate(),
            content: MessageContent::parse(content).unwrap(),
            client_message_id: None,
            created_at: chrono::Utc::now(),
        };

        sequencer.enqueue(new("a")).await.unwrap().stored().await.unwrap();
        assert_eq!(lock(&sequencer.rooms).len(), 1);
        tokio::time::sleep(IDLE * 2).await;
        assert!(lock(&sequencer.rooms).is_empty(), "the idle worker retired");
        sequencer.enqueue(new("b")).await.unwrap().stored().await.unwrap();
        assert_eq!(lock(&sequencer.rooms).len(), 1);
    }
}
