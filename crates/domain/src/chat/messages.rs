//! Messages: sending (with idempotent retries), reading history (through the cache), editing
//! and deleting. The inbound port [`MessageService`] and its implementation by [`ChatUseCases`].

use std::sync::Arc;

use async_trait::async_trait;

use super::{ChatUseCases, QueuedSend, RoomRef};
use crate::error::{DomainError, DomainResult, ValidationError};
use crate::event::Event;
use crate::id::{MessageId, RoomId, UserId};
use crate::message::{
    CachedPage, ClientMessageId, HistoryPage, HistoryQuery, Message, MessageContent, NewMessage, Posted,
    RECENT_MESSAGES,
};

/// Messages, as the api's message routes and WebSocket gateway call them: the inbound port that
/// [`ChatUseCases`] implements.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait MessageService: Send + Sync {
    /// Stores a message and tells the room. A retry with the same `client_message_id` returns
    /// the original message (`created: false`) and stores nothing.
    async fn send(
        &self,
        author: UserId,
        room: &RoomRef,
        content: MessageContent,
        client_message_id: Option<ClientMessageId>,
    ) -> DomainResult<Posted> {
        self.enqueue(author, room, content, client_message_id).await?.stored().await
    }

    /// The first half of [`Self::send`]: checks the send and queues it behind the sends queued
    /// before it to the room, without waiting for it to be stored. A client that pipelines its
    /// sends enqueues them one after another and awaits each [`QueuedSend`] later: its messages
    /// keep their order. Once queued, a send is stored and announced even if nobody awaits it.
    async fn enqueue(
        &self,
        author: UserId,
        room: &RoomRef,
        content: MessageContent,
        client_message_id: Option<ClientMessageId>,
    ) -> DomainResult<QueuedSend>;

    /// A page of the room's history, for a member. The latest page comes from the cache when
    /// it can answer; a room's name and the caller's membership, once confirmed by storage, are
    /// answered from memory for a while (a leave on any instance ends the latter at once).
    async fn history(
        &self,
        user: UserId,
        room: &RoomRef,
        query: &HistoryQuery,
    ) -> DomainResult<Arc<HistoryPage>>;

    /// Replaces the content of the caller's own message.
    async fn edit(&self, user: UserId, id: MessageId, content: MessageContent) -> DomainResult<Message>;

    /// Deletes a message: the author may delete their own, the room's owner any. Returns the
    /// room it was in.
    async fn delete(&self, user: UserId, id: MessageId) -> DomainResult<RoomId>;
}

#[async_trait]
impl MessageService for ChatUseCases {
    async fn enqueue(
        &self,
        author: UserId,
        room: &RoomRef,
        content: MessageContent,
        client_message_id: Option<ClientMessageId>,
    ) -> DomainResult<QueuedSend> {
        // The rate limit and a retry (a key used before) are both decided for the whole batch
        // the send joins, so queuing it needs no round trip of its own. A retry spends a point.
        let room_id = self.resolve(room).await?;
        self.sequencer
            .enqueue(NewMessage {
                id: MessageId::generate(),
                room_id,
                author_id: author,
                content,
                client_message_id,
                created_at: self.ports.clock.now(),
            })
            .await
    }

    async fn history(
        &self,
        user: UserId,
        room: &RoomRef,
        query: &HistoryQuery,
    ) -> DomainResult<Arc<HistoryPage>> {
        let room_id = self.resolve(room).await?;
        self.require_member(room_id, user).await?;
        if !query.is_latest() {
            return self.ports.messages.history(room_id, query).await.map(Arc::new);
        }
        let ticket = match self.ports.cache.latest(room_id, query.limit).await {
            Ok(CachedPage::Hit(page)) => return Ok(page),
            Ok(CachedPage::Miss(ticket)) => Some(ticket),
            Err(error) => {
                tracing::warn!(%error, "message cache unavailable, reading storage");
                None
            }
        };
        let recent = self.ports.messages.history(room_id, &HistoryQuery::latest(RECENT_MESSAGES)).await?;
        if let Some(ticket) = ticket
            && let Err(error) = self.ports.cache.fill(room_id, &recent, ticket).await
        {
            tracing::warn!(%error, "could not fill the message cache");
        }
        Ok(Arc::new(latest_of(recent, query.limit)))
    }

    async fn edit(&self, user: UserId, id: MessageId, content: MessageContent) -> DomainResult<Message> {
        let message = self.find_message(id).await?;
        if message.author.id != user {
            return Err(DomainError::NotTheAuthor);
        }
        self.require_member(message.room_id, user).await?;
        let edited = self.ports.messages.edit(id, &content, self.ports.clock.now()).await?;
        if let Err(error) = self.ports.cache.message_edited(&edited).await {
            tracing::warn!(%error, "could not update an edited message in the cache");
        }
        self.announce(Event::MessageEdited(edited.clone())).await;
        Ok(edited)
    }

    async fn delete(&self, user: UserId, id: MessageId) -> DomainResult<RoomId> {
        let message = self.find_message(id).await?;
        if message.author.id != user && self.find_room(message.room_id).await?.owner_id != user {
            return Err(DomainError::NotTheAuthor);
        }
        if self.ports.messages.delete(id, self.ports.clock.now()).await? {
            if let Err(error) = self.ports.cache.message_deleted(message.room_id, id).await {
                tracing::warn!(%error, "could not remove a deleted message from the cache");
            }
            self.announce(Event::MessageDeleted {
                room_id: message.room_id,
                message_id: id,
                seq: message.seq,
            })
            .await;
        }
        Ok(message.room_id)
    }
}

/// The answer to a stored send: a new message as is; for a retry (`created: false`) the original
/// message, provided its key was used for the same room.
pub(super) fn retried_send(posted: Posted, room: RoomId) -> DomainResult<Posted> {
    if !posted.created && posted.message.room_id != room {
        return Err(ValidationError::new(
            crate::error::Field::ClientMessageId,
            "was already used for a message in another room",
        )
        .into());
    }
    Ok(posted)
}

/// The last `limit` messages of a latest-page read.
fn latest_of(mut page: HistoryPage, limit: u32) -> HistoryPage {
    let limit = limit as usize;
    if page.messages.len() > limit {
        page.messages.drain(..page.messages.len() - limit);
        page.has_more = true;
    }
    page
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{TimeZone, Utc};
    use mockall::predicate::{always, eq};

    use super::*;
    use crate::chat::test_support::{Mocks, SEND_LIMIT, message};
    use crate::message::FillTicket;
    use crate::rate_limit::RateDecision;
    use crate::room::{Room, RoomName};

    fn content() -> MessageContent {
        MessageContent::parse("hello").unwrap()
    }

    #[tokio::test]
    async fn a_new_message_is_stored_cached_and_announced() {
        let (room, author) = (RoomId::generate(), UserId::generate());
        let mut mocks = Mocks::new();
        mocks
            .limiter
            .expect_acquire_each()
            .withf(move |keys, limit| keys == [format!("send:{author}")] && *limit == SEND_LIMIT)
            .times(1)
            .returning(|_, _| Ok(vec![RateDecision::Allowed { remaining: 4 }]));
        let stored = message(room, author, 7);
        let returned = stored.clone();
        mocks
            .messages
            .expect_insert_batch()
            .withf(move |in_room, batch| {
                *in_room == room
                    && matches!(batch, [new] if new.room_id == room && new.author_id == author && new.content.as_str() == "hello")
            })
            .times(1)
            .returning(move |_, _| Ok(vec![Ok(Posted { message: returned.clone(), created: true })]));
        mocks
            .cache
            .expect_messages_stored()
            .with(eq(room), eq(vec![stored.clone()]))
            .times(1)
            .returning(|_, _| Ok(()));
        mocks
            .events
            .expect_publish_all()
            .with(eq(vec![Event::MessageCreated(stored.clone())]))
            .times(1)
            .returning(|_| Ok(()));

        let posted = mocks.service().send(author, &RoomRef::Id(room), content(), None).await.unwrap();
        assert!(posted.created);
        assert_eq!(posted.message, stored);
    }

    /// Storage answers a keyed send with the message stored earlier under its key.
    fn retry_answered_with(mocks: &mut Mocks, original: &Message) {
        let found = original.clone();
        mocks
            .limiter
            .expect_acquire_each()
            .times(1)
            .returning(|_, _| Ok(vec![RateDecision::Allowed { remaining: 4 }]));
        mocks
            .messages
            .expect_insert_batch()
            .withf(|_, batch| matches!(batch, [new] if new.client_message_id.as_ref().is_some_and(|k| k.as_str() == "k1")))
            .times(1)
            .returning(move |_, _| Ok(vec![Ok(Posted { message: found.clone(), created: false })]));
        mocks.cache.expect_messages_stored().never();
        mocks.events.expect_publish_all().never();
    }

    #[tokio::test]
    async fn a_retry_returns_the_original_and_announces_nothing() {
        let (room, author) = (RoomId::generate(), UserId::generate());
        let original = message(room, author, 3);
        let mut mocks = Mocks::new();
        retry_answered_with(&mut mocks, &original);

        let key = ClientMessageId::parse("k1").unwrap();
        let posted = mocks.service().send(author, &RoomRef::Id(room), content(), Some(key)).await.unwrap();
        assert!(!posted.created);
        assert_eq!(posted.message, original);
    }

    #[tokio::test]
    async fn a_key_reused_in_another_room_is_refused() {
        let author = UserId::generate();
        let mut mocks = Mocks::new();
        retry_answered_with(&mut mocks, &message(RoomId::generate(), author, 1));

        let key = ClientMessageId::parse("k1").unwrap();
        let error = mocks
            .service()
            .send(author, &RoomRef::Id(RoomId::generate()), content(), Some(key))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, DomainError::Validation(v) if v.field == crate::error::Field::ClientMessageId),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_rate_limited_send_stores_nothing() {
        let mut mocks = Mocks::new();
        mocks
            .limiter
            .expect_acquire_each()
            .returning(|_, _| Ok(vec![RateDecision::Limited { retry_after: Duration::from_millis(2500) }]));
        mocks.rooms.expect_membership().returning(|_, _| Ok(crate::room::Membership::Member));
        mocks.messages.expect_insert_batch().never();
        let error = mocks
            .service()
            .send(UserId::generate(), &RoomRef::Id(RoomId::generate()), content(), None)
            .await
            .unwrap_err();
        assert!(
            matches!(error, DomainError::RateLimited { retry_after } if retry_after == Duration::from_millis(2500))
        );
    }

    #[tokio::test]
    async fn a_send_by_room_name_resolves_the_name_first() {
        let mut mocks = Mocks::new();
        mocks.rooms.expect_find_by_name().returning(|_| Ok(None));
        mocks.limiter.expect_acquire_each().never();
        let name = RoomName::parse("nowhere").unwrap();
        let error = mocks
            .service()
            .send(UserId::generate(), &RoomRef::Name(name), content(), None)
            .await
            .unwrap_err();
        assert!(matches!(error, DomainError::RoomNotFound));
    }

    #[tokio::test]
    async fn the_latest_page_comes_from_the_cache_when_it_can_answer() {
        let (room, user) = (RoomId::generate(), UserId::generate());
        let page = Arc::new(HistoryPage::new(vec![message(room, user, 9)], true));
        let cached = Arc::clone(&page);
        let mut mocks = Mocks::new();
        mocks.member_of_every_room();
        mocks
            .cache
            .expect_latest()
            .with(eq(room), eq(1))
            .returning(move |_, _| Ok(CachedPage::Hit(Arc::clone(&cached))));
        mocks.messages.expect_history().never();
        let read = mocks.service().history(user, &RoomRef::Id(room), &HistoryQuery::latest(1)).await.unwrap();
        assert!(Arc::ptr_eq(&read, &page), "the cache's own page, shared");
    }

    #[tokio::test]
    async fn a_cache_miss_reads_storage_fills_the_cache_and_returns_the_asked_slice() {
        let (room, user) = (RoomId::generate(), UserId::generate());
        let stored = HistoryPage::new((1..=5).map(|seq| message(room, user, seq)).collect(), false);
        let from_storage = stored.clone();
        let mut mocks = Mocks::new();
        mocks.member_of_every_room();
        mocks.cache.expect_latest().returning(|_, _| Ok(CachedPage::Miss(FillTicket(4))));
        mocks
            .messages
            .expect_history()
            .with(eq(room), eq(HistoryQuery::latest(RECENT_MESSAGES)))
            .times(1)
            .returning(move |_, _| Ok(from_storage.clone()));
        mocks
            .cache
            .expect_fill()
            .with(eq(room), eq(stored.clone()), eq(FillTicket(4)))
            .times(1)
            .returning(|_, _, _| Ok(()));

        let read = mocks.service().history(user, &RoomRef::Id(room), &HistoryQuery::latest(2)).await.unwrap();
        let seqs: Vec<i64> = read.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [4, 5]);
        assert!(read.has_more);
    }

    #[tokio::test]
    async fn history_survives_a_failing_cache() {
        let (room, user) = (RoomId::generate(), UserId::generate());
        let mut mocks = Mocks::new();
        mocks.member_of_every_room();
        mocks.cache.expect_latest().returning(|_, _| Err(DomainError::unavailable("cache", "down")));
        mocks.cache.expect_fill().never();
        mocks.messages.expect_history().returning(|_, _| Ok(HistoryPage::default()));
        let read =
            mocks.service().history(user, &RoomRef::Id(room), &HistoryQuery::latest(50)).await.unwrap();
        assert_eq!(*read, HistoryPage::default());
    }

    #[tokio::test]
    async fn paging_with_a_cursor_reads_storage() {
        let (room, user) = (RoomId::generate(), UserId::generate());
        let query = HistoryQuery::parse(Some(10), None, Some(5)).unwrap();
        let mut mocks = Mocks::new();
        mocks.member_of_every_room();
        mocks.cache.expect_latest().never();
        mocks
            .messages
            .expect_history()
            .with(eq(room), eq(query))
            .times(1)
            .returning(|_, _| Ok(HistoryPage::default()));
        mocks.service().history(user, &RoomRef::Id(room), &query).await.unwrap();
    }

    #[tokio::test]
    async fn only_the_author_edits() {
        let (room, author) = (RoomId::generate(), UserId::generate());
        let original = message(room, author, 1);
        let id = original.id;
        let mut mocks = Mocks::new();
        let found = original.clone();
        mocks.messages.expect_find().with(eq(id)).returning(move |_| Ok(Some(found.clone())));
        mocks.member_of_every_room();
        let mut edited = original.clone();
        edited.content = MessageContent::parse("new").unwrap();
        edited.edited_at = Some(Utc.timestamp_opt(1_800_000_000, 0).unwrap());
        let returned = edited.clone();
        mocks.messages.expect_edit().times(1).returning(move |_, _, _| Ok(returned.clone()));
        mocks.cache.expect_message_edited().with(eq(edited.clone())).times(1).returning(|_| Ok(()));
        mocks
            .events
            .expect_publish()
            .with(eq(Event::MessageEdited(edited.clone())))
            .times(1)
            .returning(|_| Ok(()));
        let service = mocks.service();

        let error =
            service.edit(UserId::generate(), id, MessageContent::parse("x").unwrap()).await.unwrap_err();
        assert!(matches!(error, DomainError::NotTheAuthor));
        assert_eq!(service.edit(author, id, MessageContent::parse("new").unwrap()).await.unwrap(), edited);
    }

    #[tokio::test]
    async fn the_owner_may_delete_any_message_and_others_none() {
        let (room, author, owner) = (RoomId::generate(), UserId::generate(), UserId::generate());
        let original = message(room, author, 1);
        let id = original.id;
        let mut mocks = Mocks::new();
        mocks.messages.expect_find().returning(move |_| Ok(Some(original.clone())));
        mocks.rooms.expect_find().with(eq(room)).returning(move |_| {
            Ok(Some(Room {
                id: room,
                name: RoomName::parse("r").unwrap(),
                owner_id: owner,
                created_at: Utc::now(),
                member_count: 2,
                last_seq: 1,
            }))
        });
        mocks.messages.expect_delete().with(eq(id), always()).times(1).returning(|_, _| Ok(true));
        mocks.cache.expect_message_deleted().with(eq(room), eq(id)).times(1).returning(|_, _| Ok(()));
        mocks
            .events
            .expect_publish()
            .with(eq(Event::MessageDeleted { room_id: room, message_id: id, seq: 1 }))
            .times(1)
            .returning(|_| Ok(()));
        let service = mocks.service();

        let error = service.delete(UserId::generate(), id).await.unwrap_err();
        assert!(matches!(error, DomainError::NotTheAuthor));
        service.delete(owner, id).await.unwrap();
    }
}
