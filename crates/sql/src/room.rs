//! `RoomRepository`: rooms, the room directory and memberships.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use convo_domain::{
    DirectoryQuery, DomainError, DomainResult, Member, Membership, NewRoom, Room, RoomId, RoomName,
    RoomRepository, RoomSummary, UserId, Username,
};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, OnConflict, Query, SubQueryStatement};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, JoinType, Order,
    QueryFilter, QueryOrder, QuerySelect, RelationTrait, Select, sea_query::Asterisk,
};
use uuid::Uuid;

use crate::entity::{membership, room, user};
use crate::error::{db_error, unique_violation};
use crate::store::{SqlStore, stored};

/// A room with its member count, as `room_select` reads it.
#[derive(Debug, FromQueryResult)]
struct RoomRow {
    id: Uuid,
    name: String,
    owner_id: Uuid,
    created_at: DateTime<Utc>,
    last_seq: i64,
    member_count: i64,
}

/// One of a user's rooms, as `rooms_of` reads it.
#[derive(Debug, FromQueryResult)]
struct SummaryRow {
    id: Uuid,
    name: String,
    owner_id: Uuid,
    created_at: DateTime<Utc>,
    last_seq: i64,
    last_message_at: Option<DateTime<Utc>>,
    member_count: i64,
    joined_at: DateTime<Utc>,
}

#[derive(Debug, FromQueryResult)]
struct MemberRow {
    user_id: Uuid,
    username: String,
    joined_at: DateTime<Utc>,
}

/// `SELECT rooms.*, (SELECT COUNT(*) FROM memberships counted WHERE counted.room_id = rooms.id)`.
fn room_select() -> Select<room::Entity> {
    let counted = Alias::new("counted");
    let count = Query::select()
        .expr(Func::count(Expr::col(Asterisk)))
        .from_as(membership::Entity, counted.clone())
        .and_where(Expr::col((counted, membership::Column::RoomId)).equals((room::Entity, room::Column::Id)))
        .to_owned();
    room::Entity::find()
        .expr_as(Expr::SubQuery(None, Box::new(SubQueryStatement::from(count))), "member_count")
}

fn to_room(row: RoomRow) -> Room {
    Room {
        id: RoomId::from_uuid(row.id),
        name: RoomName::from_trusted(row.name),
        owner_id: UserId::from_uuid(row.owner_id),
        created_at: row.created_at,
        member_count: u64::try_from(row.member_count).unwrap_or_default(),
        last_seq: row.last_seq,
    }
}

/// The smallest string greater than every string that starts with `prefix`, in code point order
/// (which is byte order in UTF-8); `None` when there is none. With it a prefix search is a range
/// on the `name_key` index, and `%` or `_` in the prefix are plain characters.
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[async_trait]
impl RoomRepository for SqlStore {
    async fn create(&self, new: &NewRoom) -> DomainResult<Room> {
        let created_at = stored(new.created_at);
        let insert = async {
            let tx = self.write().await?;
            room::Entity::insert(room::ActiveModel {
                id: Set(new.id.as_uuid()),
                name: Set(new.name.as_str().to_owned()),
                name_key: Set(new.name.key()),
                owner_id: Set(new.owner_id.as_uuid()),
                created_at: Set(created_at),
                last_seq: Set(0),
                last_message_at: Set(None),
            })
            .exec_without_returning(&*tx)
            .await?;
            membership::Entity::insert(membership::ActiveModel {
                room_id: Set(new.id.as_uuid()),
                user_id: Set(new.owner_id.as_uuid()),
                joined_at: Set(created_at),
            })
            .exec_without_returning(&*tx)
            .await?;
            tx.commit().await
        };
        match insert.await {
            Ok(()) => Ok(Room {
                id: new.id,
                name: new.name.clone(),
                owner_id: new.owner_id,
                created_at,
                member_count: 1,
                last_seq: 0,
            }),
            // Index `idx_rooms_name_key` / column `rooms.name_key`.
            Err(error) if unique_violation(&error).is_some_and(|message| message.contains("name_key")) => {
                Err(DomainError::RoomNameTaken)
            }
            Err(error) => Err(db_error(error)),
        }
    }

    async fn find(&self, id: RoomId) -> DomainResult<Option<Room>> {
        let row = room_select()
            .filter(room::Column::Id.eq(id.as_uuid()))
            .into_model::<RoomRow>()
            .one(&self.db)
            .await
            .map_err(db_error)?;
        Ok(row.map(to_room))
    }

    async fn find_by_name(&self, name: &RoomName) -> DomainResult<Option<Room>> {
        let row = room_select()
            .filter(room::Column::NameKey.eq(name.key()))
            .into_model::<RoomRow>()
            .one(&self.db)
            .await
            .map_err(db_error)?;
        Ok(row.map(to_room))
    }

    async fn directory(&self, query: &DirectoryQuery) -> DomainResult<Vec<Room>> {
        let mut select = room_select();
        if !query.prefix_key.is_empty() {
            select = select.filter(room::Column::NameKey.gte(query.prefix_key.as_str()));
            if let Some(end) = prefix_successor(&query.prefix_key) {
                select = select.filter(room::Column::NameKey.lt(end));
            }
        }
        let rows = select
            .order_by_asc(room::Column::NameKey)
            .limit(u64::from(query.limit))
            .into_model::<RoomRow>()
            .all(&self.db)
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(to_room).collect())
    }

    async fn rooms_of(&self, user: UserId) -> DomainResult<Vec<RoomSummary>> {
        let last_active = Func::coalesce([
            Expr::col((room::Entity, room::Column::LastMessageAt)),
            Expr::col((room::Entity, room::Column::CreatedAt)),
        ]);
        let rows = room_select()
            .column(membership::Column::JoinedAt)
            .join(JoinType::InnerJoin, room::Relation::Memberships.def())
            .filter(membership::Column::UserId.eq(user.as_uuid()))
            .order_by(Expr::from(last_active), Order::Desc)
            .order_by_desc(room::Column::Id)
            .into_model::<SummaryRow>()
            .all(&self.db)
            .await
            .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|row| RoomSummary {
                joined_at: row.joined_at,
                last_message_at: row.last_message_at,
                room: to_room(RoomRow {
                    id: row.id,
                    name: row.name,
                    owner_id: row.owner_id,
                    created_at: row.created_at,
                    last_seq: row.last_seq,
                    member_count: row.member_count,
                }),
            })
            .collect())
    }

    async fn membership(&self, room_id: RoomId, user_id: UserId) -> DomainResult<Membership> {
        // One round trip: no row means no room; the EXISTS says whether the user belongs to it.
        let is_member = Query::select()
            .expr(Expr::val(1))
            .from(membership::Entity)
            .and_where(membership::Column::RoomId.eq(room_id.as_uuid()))
            .and_where(membership::Column::UserId.eq(user_id.as_uuid()))
            .to_owned();
        let answer: Option<bool> = room::Entity::find()
            .select_only()
            .expr_as(Expr::exists(is_member), "is_member")
            .filter(room::Column::Id.eq(room_id.as_uuid()))
            .into_tuple()
            .one(&self.db)
            .await
            .map_err(db_error)?;
        Ok(match answer {
            None => Membership::NoSuchRoom,
            Some(false) => Membership::Outsider,
            Some(true) => Membership::Member,
        })
    }

    async fn join(&self, room_id: RoomId, user_id: UserId, at: DateTime<Utc>) -> DomainResult<bool> {
        let join = async {
            let tx = self.write().await?;
            if room::Entity::find_by_id(room_id.as_uuid()).one(&*tx).await?.is_none() {
                tx.rollback().await?;
                return Ok(None);
            }
            let insert = Query::insert()
                .into_table(membership::Entity)
                .columns([
                    membership::Column::RoomId,
                    membership::Column::UserId,
                    membership::Column::JoinedAt,
                ])
                .values_panic([room_id.as_uuid().into(), user_id.as_uuid().into(), stored(at).into()])
                .on_conflict(
                    OnConflict::columns([membership::Column::RoomId, membership::Column::UserId])
                        .do_nothing()
                        .to_owned(),
                )
                .to_owned();
            let inserted = tx.execute(&insert).await?.rows_affected() > 0;
            tx.commit().await?;
            Ok(Some(inserted))
        };
        join.await.map_err(db_error)?.ok_or(DomainError::RoomNotFound)
    }

    async fn leave(&self, room_id: RoomId, user_id: UserId) -> DomainResult<bool> {
        let leave = async {
            let tx = self.write().await?;
            let deleted = membership::Entity::delete_many()
                .filter(membership::Column::RoomId.eq(room_id.as_uuid()))
                .filter(membership::Column::UserId.eq(user_id.as_uuid()))
                .exec(&*tx)
                .await?
                .rows_affected;
            tx.commit().await?;
            Ok(deleted > 0)
        };
        leave.await.map_err(db_error)
    }

    async fn members(&self, room_id: RoomId) -> DomainResult<Vec<Member>> {
        let rows = membership::Entity::find()
            .select_only()
            .column(membership::Column::UserId)
            .column(user::Column::Username)
            .column(membership::Column::JoinedAt)
            .join(JoinType::InnerJoin, membership::Relation::User.def())
            .filter(membership::Column::RoomId.eq(room_id.as_uuid()))
            .order_by_asc(membership::Column::JoinedAt)
            .order_by_asc(user::Column::UsernameKey)
            .into_model::<MemberRow>()
            .all(&self.db)
            .await
            .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|row| Member {
                user_id: UserId::from_uuid(row.user_id),
                username: Username::from_trusted(row.username),
                joined_at: row.joined_at,
                online: false,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_successor;

    #[test]
    fn prefix_successor_bounds_exactly_the_strings_with_the_prefix() {
        assert_eq!(prefix_successor("gen").as_deref(), Some("geo"));
        assert_eq!(prefix_successor("a%").as_deref(), Some("a&"));
        assert_eq!(prefix_successor("caf\u{e9}").as_deref(), Some("caf\u{ea}"));
        // U+D7FF is followed by the surrogates, which are not chars: skip to U+E000.
        assert_eq!(prefix_successor("\u{d7ff}").as_deref(), Some("\u{e000}"));
        assert_eq!(prefix_successor("a\u{10ffff}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{10ffff}"), None);
    }
}
