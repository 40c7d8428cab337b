//! `MessageRepository`: storing messages with their per-room seq, history pages, edits and
//! soft deletes.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use convo_domain::{
    ClientMessageId, DomainError, DomainResult, HistoryPage, HistoryQuery, Message, MessageContent,
    MessageId, MessageRepository, NewMessage, Posted, RoomId, UserId, UserRef, Username,
};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult,
    IdenStatic, JoinType, QueryFilter, QueryOrder, QuerySelect, RelationTrait, Select, Statement,
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
    deleted_at: Option<DateTime<Utc>>,
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

/// What the batch transaction decided for one message of the batch.
enum Plan {
    /// Refused on its own (not a member).
    Refused(DomainError),
    /// The client key was used before: this is the message it named.
    Existing(Message),
    /// The same key as an earlier message of this batch, at this index.
    SameAs(usize),
    /// Stored with this seq.
    Stored(i64),
}

/// How many times a batch is tried again after losing a race on a client key to a send in
/// another room (the only race the room's row lock does not order).
const KEY_RACE_RETRIES: usize = 2;

impl SqlStore {
    /// The batch transaction: reserve the batch's seqs under the room's row lock, check every
    /// author's membership and key at once, insert what passed in one statement, commit.
    async fn try_insert_batch(
        &self,
        room: RoomId,
        batch: &[NewMessage],
    ) -> Result<Vec<DomainResult<Posted>>, DbErr> {
        let room_id = room.as_uuid();
        let size = batch.len() as i64;
        let tx = self.write().await?;

        // The first statement takes the room's row lock (PostgreSQL), so concurrent batches to
        // the room, from any instance, queue here and each sees the seq the previous one
        // committed: no gap, no duplicate. On SQLite the transaction holds the write lock.
        let Some((last_seq, members)) = reserve_seqs(&*tx, room_id, batch).await? else {
            tx.rollback().await?;
            return Ok(batch.iter().map(|_| Err(DomainError::RoomNotFound)).collect());
        };
        let first_seq = last_seq - size + 1;
        let used = used_keys(&*tx, batch).await?;

        let mut plans = Vec::with_capacity(batch.len());
        let mut keys_in_batch: HashMap<(Uuid, &str), usize> = HashMap::new();
        let mut next_seq = first_seq;
        for (index, new) in batch.iter().enumerate() {
            let author = new.author_id.as_uuid();
            let key = new.client_message_id.as_ref().map(ClientMessageId::as_str);
            plans.push(if !members.contains_key(&author) {
                Plan::Refused(DomainError::NotAMember)
            } else if let Some(used) = key.and_then(|key| used.get(&(author, key.to_owned()))) {
                if used.deleted {
                    Plan::Refused(DomainError::MessageDeleted)
                } else {
                    Plan::Existing(used.message.clone())
                }
            } else if let Some(&first) = key.and_then(|key| keys_in_batch.get(&(author, key))) {
                Plan::SameAs(first)
            } else {
                if let Some(key) = key {
                    keys_in_batch.insert((author, key), index);
                }
                next_seq += 1;
                Plan::Stored(next_seq - 1)
            });
        }

        let stored_count = next_seq - first_seq;
        if stored_count == 0 {
            tx.rollback().await?;
        } else {
            if stored_count < size {
                // Give back the seqs of the refused, so the room's seqs stay gap-free.
                let stored_ones =
                    batch.iter().zip(&plans).filter(|(_, plan)| matches!(plan, Plan::Stored(_)));
                let give_back = Query::update()
                    .table(room::Entity)
                    .value(room::Column::LastSeq, next_seq - 1)
                    .value(room::Column::LastMessageAt, latest_stamp(stored_ones.map(|(new, _)| new)))
                    .and_where(room::Column::Id.eq(room_id))
                    .to_owned();
                tx.execute(&give_back).await?;
            }
            let rows: Vec<(&NewMessage, i64)> = batch
                .iter()
                .zip(&plans)
                .filter_map(|(new, plan)| match plan {
                    Plan::Stored(seq) => Some((new, *seq)),
                    _ => None,
                })
                .collect();
            // Nothing is read back: the seqs, the authors' names and the stamps are all known.
            insert_rows(&*tx, room_id, &rows).await?;
            tx.commit().await?;
        }

        let mut outcomes: Vec<DomainResult<Posted>> = Vec::with_capacity(batch.len());
        for (new, plan) in batch.iter().zip(plans) {
            outcomes.push(match plan {
                Plan::Refused(error) => Err(error),
                Plan::Existing(message) => Ok(Posted { message, created: false }),
                Plan::SameAs(first) => match &outcomes[first] {
                    Ok(posted) => Ok(Posted { message: posted.message.clone(), created: false }),
                    Err(_) => Err(DomainError::internal("a batch's first use of a key was not stored")),
                },
                Plan::Stored(seq) => {
                    let username = members.get(&new.author_id.as_uuid()).cloned().unwrap_or_default();
                    Ok(Posted { message: stored_message(new, seq, username), created: true })
                }
            });
        }
        Ok(outcomes)
    }
}

/// The latest creation stamp of these messages, as storage keeps it.
fn latest_stamp<'a>(messages: impl Iterator<Item = &'a NewMessage>) -> Option<DateTime<Utc>> {
    messages.map(|new| stored(new.created_at)).max()
}

/// Reserves `batch.len()` seqs in the room and reads which of the batch's authors are members,
/// with their usernames: the room's last seq after the reservation and the members, or `None`
/// if the room does not exist. One statement on PostgreSQL (its text the same for any batch,
/// so it is prepared once per connection); two on SQLite, which cannot update in a `WITH`.
async fn reserve_seqs<C: ConnectionTrait>(
    db: &C,
    room_id: Uuid,
    batch: &[NewMessage],
) -> Result<Option<(i64, HashMap<Uuid, String>)>, DbErr> {
    let size = batch.len() as i64;
    let stamp = latest_stamp(batch.iter());
    let mut authors: Vec<Uuid> = batch.iter().map(|new| new.author_id.as_uuid()).collect();
    authors.sort_unstable();
    authors.dedup();

    if db.get_database_backend() == DbBackend::Postgres {
        const RESERVE_AND_READ_MEMBERS: &str = "\
            WITH reserved AS (\
                UPDATE rooms SET last_seq = last_seq + $1, last_message_at = $2 WHERE id = $3 \
                RETURNING last_seq) \
            SELECT reserved.last_seq, users.id AS user_id, users.username \
            FROM reserved \
            LEFT JOIN memberships ON memberships.room_id = $3 AND memberships.user_id = ANY($4) \
            LEFT JOIN users ON users.id = memberships.user_id";
        let values = [size.into(), stamp.into(), room_id.into(), authors.into()];
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                RESERVE_AND_READ_MEMBERS,
                values,
            ))
            .await?;
        let Some(first) = rows.first() else { return Ok(None) };
        let last_seq: i64 = first.try_get("", "last_seq")?;
        let mut members = HashMap::with_capacity(rows.len());
        for row in &rows {
            if let Some(user) = row.try_get::<Option<Uuid>>("", "user_id")? {
                members.insert(user, row.try_get::<String>("", "username")?);
            }
        }
        return Ok(Some((last_seq, members)));
    }

    let reserve = Query::update()
        .table(room::Entity)
        .value(room::Column::LastSeq, Expr::col(room::Column::LastSeq).add(size))
        .value(room::Column::LastMessageAt, stamp)
        .and_where(room::Column::Id.eq(room_id))
        .returning_col(room::Column::LastSeq)
        .to_owned();
    let Some(row) = db.query_one(&reserve).await? else { return Ok(None) };
    let last_seq = row.try_get::<i64>("", room::Column::LastSeq.as_str())?;
    let members = membership::Entity::find()
        .select_only()
        .column(membership::Column::UserId)
        .column(user::Column::Username)
        .join(JoinType::InnerJoin, membership::Relation::User.def())
        .filter(membership::Column::RoomId.eq(room_id))
        .filter(membership::Column::UserId.is_in(authors))
        .into_tuple::<(Uuid, String)>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    Ok(Some((last_seq, members)))
}

/// Inserts the stored messages of a batch, each with its seq, in one statement. On PostgreSQL
/// the rows travel as one array per column, so the statement's text is the same for any batch.
async fn insert_rows<C: ConnectionTrait>(
    db: &C,
    room_id: Uuid,
    rows: &[(&NewMessage, i64)],
) -> Result<(), DbErr> {
    if db.get_database_backend() == DbBackend::Postgres {
        const INSERT_ROWS: &str = "\
            INSERT INTO messages (id, room_id, seq, author_id, content, created_at, client_message_id) \
            SELECT id, $1, seq, author_id, content, created_at, NULLIF(client_message_id, '') \
            FROM UNNEST($2::uuid[], $3::int8[], $4::uuid[], $5::text[], $6::timestamptz[], $7::text[]) \
            AS batch (id, seq, author_id, content, created_at, client_message_id)";
        // A message without a client key travels as '' (keys are never empty) and is stored
        // as NULL: the array binding has no room for a null element.
        let ids: Vec<Uuid> = rows.iter().map(|(new, _)| new.id.as_uuid()).collect();
        let seqs: Vec<i64> = rows.iter().map(|(_, seq)| *seq).collect();
        let authors: Vec<Uuid> = rows.iter().map(|(new, _)| new.author_id.as_uuid()).collect();
        let contents: Vec<String> = rows.iter().map(|(new, _)| new.content.as_str().to_owned()).collect();
        let stamps: Vec<DateTime<Utc>> = rows.iter().map(|(new, _)| stored(new.created_at)).collect();
        let keys: Vec<String> = rows
            .iter()
            .map(|(new, _)| {
                new.client_message_id.as_ref().map_or_else(String::new, |key| key.as_str().to_owned())
            })
            .collect();
        let values = [
            room_id.into(),
            ids.into(),
            seqs.into(),
            authors.into(),
            contents.into(),
            stamps.into(),
            keys.into(),
        ];
        db.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, INSERT_ROWS, values)).await?;
        return Ok(());
    }

    let models = rows.iter().map(|(new, seq)| message::ActiveModel {
        id: Set(new.id.as_uuid()),
        room_id: Set(room_id),
        seq: Set(*seq),
        author_id: Set(new.author_id.as_uuid()),
        content: Set(new.content.as_str().to_owned()),
        created_at: Set(stored(new.created_at)),
        edited_at: Set(None),
        deleted_at: Set(None),
        client_message_id: Set(new.client_message_id.as_ref().map(|key| key.as_str().to_owned())),
    });
    message::Entity::insert_many(models).exec_without_returning(db).await?;
    Ok(())
}

/// A message stored earlier under a key of the batch.
struct UsedKey {
    message: Message,
    deleted: bool,
}

/// The messages stored earlier under the batch's (author, key) pairs, deleted ones included.
async fn used_keys<C: ConnectionTrait>(
    db: &C,
    batch: &[NewMessage],
) -> Result<HashMap<(Uuid, String), UsedKey>, DbErr> {
    let keyed: Vec<(Uuid, &str)> = batch
        .iter()
        .filter_map(|new| Some((new.author_id.as_uuid(), new.client_message_id.as_ref()?.as_str())))
        .collect();
    if keyed.is_empty() {
        return Ok(HashMap::new());
    }
    // Authors and keys are matched separately in SQL (portable, and both are indexed), then
    // paired exactly here.
    let rows = message_select()
        .filter(message::Column::AuthorId.is_in(keyed.iter().map(|(author, _)| *author)))
        .filter(message::Column::ClientMessageId.is_in(keyed.iter().map(|(_, key)| *key)))
        .into_model::<MessageRow>()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let deleted = row.deleted_at.is_some();
            let message = to_message(row);
            let key = message.client_message_id.as_ref()?.as_str().to_owned();
            keyed
                .contains(&(message.author.id.as_uuid(), key.as_str()))
                .then(|| ((message.author.id.as_uuid(), key), UsedKey { message, deleted }))
        })
        .collect())
}

/// The message a batch stored, as it now reads from storage.
fn stored_message(new: &NewMessage, seq: i64, author_username: String) -> Message {
    Message {
        id: new.id,
        room_id: new.room_id,
        seq,
        author: UserRef { id: new.author_id, username: Username::from_trusted(author_username) },
        content: new.content.clone(),
        created_at: stored(new.created_at),
        edited_at: None,
        client_message_id: new.client_message_id.clone(),
    }
}

#[async_trait]
impl MessageRepository for SqlStore {
    async fn insert_batch(
        &self,
        room: RoomId,
        batch: &[NewMessage],
    ) -> DomainResult<Vec<DomainResult<Posted>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut retries = 0;
        loop {
            match self.try_insert_batch(room, batch).await {
                Ok(outcomes) => return Ok(outcomes),
                // A send with the same author and key, to another room, committed between our
                // check and our insert: the unique index refused the batch. Try again; the
                // check now finds it and refuses only that message.
                Err(error)
                    if retries < KEY_RACE_RETRIES
                        && unique_violation(&error)
                            .is_some_and(|message| message.contains("client_message_id")) =>
                {
                    retries += 1;
                }
                Err(error) => return Err(db_error(error)),
            }
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
        Ok(HistoryPage::new(rows.into_iter().map(to_message).collect(), has_more))
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
