//! `MessageRepository`: storing messages with their per-room seq, history pages, edits and
//! soft deletes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use convo_domain::{
    ClientMessageId, DomainError, DomainResult, HistoryPage, HistoryQuery, Message, MessageContent,
    MessageId, MessageRepository, NewMessage, Posted, RoomId, UserId, UserRef, Username,
};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, IdenStatic,
    JoinType, QueryFilter, QueryOrder, QuerySelect, RelationTrait, Select,
};
use uuid::Uuid;

use crate::entity::{membership, message, room, user};
use crate::error::{db_error, unique_violation};
use crate::store::{SqlStore, stored};

/// A message with its author's username, as `message_select` reads it.
#[derive(Debug, FromQueryResult)]
struct MessageRow {
    id: Uuid,
    room_id: Uuid,
    seq: i64,
    author_id: Uuid,
    author_username: String,
    content: String,
    created_at: DateTime<Utc>,
    edited_at: Option<DateTime<Utc>>,
    client_message_id: Option<String>,
}

/// `SELECT messages.*, users.username AS author_username FROM messages JOIN users ...`,
/// deleted messages included.
fn message_select() -> Select<message::Entity> {
    message::Entity::find()
        .column_as(user::Column::Username, "author_username")
        .join(JoinType::InnerJoin, message::Relation::Author.def())
}

fn to_message(row: MessageRow) -> Message {
    Message {
        id: MessageId::from_uuid(row.id),
        room_id: RoomId::from_uuid(row.room_id),
        seq: row.seq,
        author: UserRef {
            id: UserId::from_uuid(row.author_id),
            username: Username::from_trusted(row.author_username),
        },
        content: MessageContent::from_trusted(row.content),
        created_at: row.created_at,
        edited_at: row.edited_at,
        client_message_id: row.client_message_id.map(ClientMessageId::from_trusted),
    }
}

/// A message by id, deleted or not.
async fn read_message<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Option<Message>, DbErr> {
    let row = message_select().filter(message::Column::Id.eq(id)).into_model::<MessageRow>().one(db).await?;
    Ok(row.map(to_message))
}

/// The message an author sent with a client key, deleted or not: the key stays used after a
/// delete, so that a late retry gets the original back instead of posting it again.
async fn read_by_client_id<C: ConnectionTrait>(
    db: &C,
    author: Uuid,
    client_message_id: &str,
) -> Result<Option<Message>, DbErr> {
    let row = message_select()
        .filter(message::Column::AuthorId.eq(author))
        .filter(message::Column::ClientMessageId.eq(client_message_id))
        .into_model::<MessageRow>()
        .one(db)
        .await?;
    Ok(row.map(to_message))
}

/// Why an insert did not happen.
enum Refused {
    RoomNotFound,
    NotAMember,
    /// The client key was used before: this is the message it named.
    Duplicate(Message),
}

impl SqlStore {
    /// The insert transaction. `Ok(Err(..))` is a refusal (the transaction rolled back).
    async fn try_insert(&self, new: &NewMessage) -> Result<Result<Message, Refused>, DbErr> {
        let (room_id, author_id) = (new.room_id.as_uuid(), new.author_id.as_uuid());
        let created_at = stored(new.created_at);
        let tx = self.write().await?;

        // The first statement takes the room's row lock (PostgreSQL) while it hands out the
        // next seq, so concurrent senders to a room queue here and each sees the seq the
        // previous one committed: no gap, no duplicate. A rollback gives the seq back. On
        // SQLite the whole transaction already holds the database's write lock.
        let is_member = Query::select()
            .expr(Expr::val(1))
            .from(membership::Entity)
            .and_where(membership::Column::RoomId.eq(room_id))
            .and_where(membership::Column::UserId.eq(author_id))
            .to_owned();
        let next_seq = Query::update()
            .table(room::Entity)
            .value(room::Column::LastSeq, Expr::col(room::Column::LastSeq).add(1))
            .value(room::Column::LastMessageAt, created_at)
            .and_where(room::Column::Id.eq(room_id))
            .and_where(Expr::exists(is_member))
            .returning_col(room::Column::LastSeq)
            .to_owned();
        let Some(row) = tx.query_one(&next_seq).await? else {
            let room = room::Entity::find_by_id(room_id).one(&*tx).await?;
            tx.rollback().await?;
            return Ok(Err(if room.is_none() { Refused::RoomNotFound } else { Refused::NotAMember }));
        };
        let seq: i64 = row.try_get("", room::Column::LastSeq.as_str())?;

        if let Some(key) = &new.client_message_id {
            // A send with the same key that committed before we got the room's lock.
            if let Some(existing) = read_by_client_id(&*tx, author_id, key.as_str()).await? {
                tx.rollback().await?;
                return Ok(Err(Refused::Duplicate(existing)));
            }
        }

        message::Entity::insert(message::ActiveModel {
            id: Set(new.id.as_uuid()),
            room_id: Set(room_id),
            seq: Set(seq),
            author_id: Set(author_id),
            content: Set(new.content.as_str().to_owned()),
            created_at: Set(created_at),
            edited_at: Set(None),
            deleted_at: Set(None),
            client_message_id: Set(new.client_message_id.as_ref().map(|key| key.as_str().to_owned())),
        })
        .exec_without_returning(&*tx)
        .await?;
        let message = read_message(&*tx, new.id.as_uuid())
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("the message just inserted".to_owned()))?;
        tx.commit().await?;
        Ok(Ok(message))
    }
}

#[async_trait]
impl MessageRepository for SqlStore {
    async fn insert(&self, new: &NewMessage) -> DomainResult<Posted> {
        match self.try_insert(new).await {
            Ok(Ok(message)) => Ok(Posted { message, created: true }),
            Ok(Err(Refused::RoomNotFound)) => Err(DomainError::RoomNotFound),
            Ok(Err(Refused::NotAMember)) => Err(DomainError::NotAMember),
            Ok(Err(Refused::Duplicate(message))) => Ok(Posted { message, created: false }),
            // A concurrent send with the same key, in another room (so not queued behind the
            // same lock), committed first: the unique index refused ours. Return the winner.
            Err(error)
                if new.client_message_id.is_some()
                    && unique_violation(&error)
                        .is_some_and(|message| message.contains("client_message_id")) =>
            {
                let key = new.client_message_id.as_ref().map(ClientMessageId::as_str).unwrap_or_default();
                let existing =
                    read_by_client_id(&self.db, new.author_id.as_uuid(), key).await.map_err(db_error)?;
                existing.map(|message| Posted { message, created: false }).ok_or_else(|| db_error(error))
            }
            Err(error) => Err(db_error(error)),
        }
    }

    async fn find(&self, id: MessageId) -> DomainResult<Option<Message>> {
        let row = message_select()
            .filter(message::Column::Id.eq(id.as_uuid()))
            .filter(message::Column::DeletedAt.is_null())
            .into_model::<MessageRow>()
            .one(&self.db)
            .await
            .map_err(db_error)?;
        Ok(row.map(to_message))
    }

    async fn find_by_client_id(
        &self,
        author: UserId,
        client_message_id: &ClientMessageId,
    ) -> DomainResult<Option<Message>> {
        read_by_client_id(&self.db, author.as_uuid(), client_message_id.as_str()).await.map_err(db_error)
    }

    async fn history(&self, room: RoomId, query: &HistoryQuery) -> DomainResult<HistoryPage> {
        let limit = u64::from(query.limit);
        let mut select = message_select()
            .filter(message::Column::RoomId.eq(room.as_uuid()))
            .filter(message::Column::DeletedAt.is_null());
        if let Some(before) = query.before {
            select = select.filter(message::Column::Seq.lt(before));
        }
        // Paging forward reads up from `after`; otherwise the page ends at `before` (or at the
        // latest message) and is read downwards. One row more than the page says whether more
        // exist in that direction.
        let forward = query.after.is_some();
        select = match query.after {
            Some(after) => select.filter(message::Column::Seq.gt(after)).order_by_asc(message::Column::Seq),
            None => select.order_by_desc(message::Column::Seq),
        };
        let mut rows =
            select.limit(limit + 1).into_model::<MessageRow>().all(&self.db).await.map_err(db_error)?;
        let has_more = rows.len() as u64 > limit;
        rows.truncate(query.limit as usize);
        if !forward {
            rows.reverse();
        }
        Ok(HistoryPage { messages: rows.into_iter().map(to_message).collect(), has_more })
    }

    async fn edit(
        &self,
        id: MessageId,
        content: &MessageContent,
        at: DateTime<Utc>,
    ) -> DomainResult<Message> {
        let edit = async {
            let tx = self.write().await?;
            let updated = message::Entity::update_many()
                .col_expr(message::Column::Content, Expr::val(content.as_str()))
                .col_expr(message::Column::EditedAt, Expr::val(stored(at)))
                .filter(message::Column::Id.eq(id.as_uuid()))
                .filter(message::Column::DeletedAt.is_null())
                .exec(&*tx)
                .await?
                .rows_affected;
            if updated == 0 {
                tx.rollback().await?;
                return Ok(None);
            }
            let message = read_message(&*tx, id.as_uuid()).await?;
            tx.commit().await?;
            Ok(message)
        };
        edit.await.map_err(db_error)?.ok_or(DomainError::MessageNotFound)
    }

    async fn delete(&self, id: MessageId, at: DateTime<Utc>) -> DomainResult<bool> {
        let delete = async {
            let tx = self.write().await?;
            let deleted = message::Entity::update_many()
                .col_expr(message::Column::DeletedAt, Expr::val(stored(at)))
                .filter(message::Column::Id.eq(id.as_uuid()))
                .filter(message::Column::DeletedAt.is_null())
                .exec(&*tx)
                .await?
                .rows_affected;
            tx.commit().await?;
            Ok::<_, DbErr>(deleted > 0)
        };
        delete.await.map_err(db_error)
    }
}
