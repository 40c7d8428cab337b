//! `/chat/room*`, `/chat/rooms`, `/chat/directory`: rooms and memberships.

use chrono::{DateTime, Utc};
use convo_domain::{self as domain, DirectoryQuery, RoomId, RoomName};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use crate::ApiTags;
use crate::auth::BearerAuth;
use crate::field::Field;
use crate::problem::declare_errors;
use crate::rules::{self, Ruled};
use crate::state::AppState;

/// A chat room.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct Room {
    pub id: Uuid,
    pub name: String,
    pub owner_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub member_count: u64,
    /// The seq of the latest message; 0 before the first.
    pub last_seq: i64,
}

impl From<domain::Room> for Room {
    fn from(room: domain::Room) -> Self {
        Self {
            id: room.id.as_uuid(),
            name: room.name.as_str().to_owned(),
            owner_id: room.owner_id.as_uuid(),
            created_at: room.created_at,
            member_count: room.member_count,
            last_seq: room.last_seq,
        }
    }
}

/// One of the caller's rooms.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct RoomSummary {
    #[oai(flatten)]
    pub room: Room,
    pub joined_at: DateTime<Utc>,
    /// When the latest message was sent; null before the first.
    #[oai(nullable)]
    pub last_message_at: Option<DateTime<Utc>>,
}

impl From<domain::RoomSummary> for RoomSummary {
    fn from(summary: domain::RoomSummary) -> Self {
        Self {
            room: summary.room.into(),
            joined_at: summary.joined_at,
            last_message_at: summary.last_message_at,
        }
    }
}

/// A member of a room.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct Member {
    pub user_id: Uuid,
    pub username: String,
    pub joined_at: DateTime<Utc>,
    /// Whether the user has a live WebSocket connection.
    pub online: bool,
}

impl From<domain::Member> for Member {
    fn from(member: domain::Member) -> Self {
        Self {
            user_id: member.user_id.as_uuid(),
            username: member.username.as_str().to_owned(),
            joined_at: member.joined_at,
            online: member.online,
        }
    }
}

/// A room to create.
#[derive(Object)]
#[oai(example)]
pub struct CreateRoomRequest {
    /// 1-50 characters of letters, digits, spaces, `_` and `-` (trimmed); unique without regard
    /// to case.
    pub name: Field<String, rules::RoomNameRule>,
}

/// The document's example, which Swagger UI pre-fills: the README walk-through's room.
impl poem_openapi::types::Example for CreateRoomRequest {
    fn example() -> Self {
        Self { name: Field::of("general".to_owned()) }
    }
}

#[derive(ApiResponse)]
pub enum CreateRoomResponse {
    /// Created; the caller owns it and is its first member.
    #[oai(status = 201)]
    Created(Json<Room>),
}

#[derive(ApiResponse)]
pub enum RoomResponse {
    /// The room.
    #[oai(status = 200)]
    Ok(Json<Room>),
}

#[derive(ApiResponse)]
pub enum RoomListResponse {
    /// The rooms.
    #[oai(status = 200)]
    Ok(Json<Vec<Room>>),
}

#[derive(ApiResponse)]
pub enum MyRoomsResponse {
    /// The caller's rooms, most recently active first.
    #[oai(status = 200)]
    Ok(Json<Vec<RoomSummary>>),
}

#[derive(ApiResponse)]
pub enum MembersResponse {
    /// The members, by the time they joined.
    #[oai(status = 200)]
    Ok(Json<Vec<Member>>),
}

#[derive(ApiResponse)]
pub enum LeaveResponse {
    /// The caller is not (or no longer) a member.
    #[oai(status = 204)]
    Left,
}

declare_errors! {
    CreateRoomError: [400, 401, 409, 413];
    MyRoomsError: [401];
    DirectoryError: [400, 401];
    /// Reading a room the caller must belong to.
    MemberOnlyError: [400, 401, 403, 404];
    /// Changing the caller's own membership.
    MembershipError: [400, 401, 404];
}

pub struct RoomApi;

#[OpenApi(tag = "ApiTags::Rooms")]
impl RoomApi {
    /// Create a room
    #[oai(path = "/chat/room", method = "post", operation_id = "createRoom")]
    async fn create(
        &self,
        state: Data<&AppState>,
        caller: BearerAuth,
        body: Json<CreateRoomRequest>,
    ) -> Result<CreateRoomResponse, CreateRoomError> {
        let Json(body) = body;
        let name = RoomName::parse(&body.name.get(domain::Field::RoomName)?)?;
        let room = state.rooms.create_room(caller.principal().user_id, name).await?;
        Ok(CreateRoomResponse::Created(Json(room.into())))
    }

    /// The caller's rooms
    #[oai(path = "/chat/rooms", method = "get", operation_id = "listMyRooms")]
    async fn mine(
        &self,
        state: Data<&AppState>,
        caller: BearerAuth,
    ) -> Result<MyRoomsResponse, MyRoomsError> {
        let rooms = state.rooms.rooms_of(caller.principal().user_id).await?;
        Ok(MyRoomsResponse::Ok(Json(rooms.into_iter().map(Into::into).collect())))
    }

    /// Search the room directory
    ///
    /// Every room whose name starts with `q` (ignoring case), by name.
    #[oai(path = "/chat/directory", method = "get", operation_id = "searchRooms")]
    async fn directory(
        &self,
        state: Data<&AppState>,
        _caller: BearerAuth,
        /// A name prefix of at most 50 characters (leading white space ignored); empty or absent
        /// lists every room.
        q: Query<Option<Ruled<String, rules::SearchPrefix>>>,
        /// 1-100, default 50.
        limit: Query<Option<Ruled<u32, rules::PageSize>>>,
    ) -> Result<RoomListResponse, DirectoryError> {
        let prefix = q.0.map(Ruled::into_inner);
        let query = DirectoryQuery::parse(prefix.as_deref(), limit.0.map(Ruled::into_inner))?;
        let rooms = state.rooms.directory(&query).await?;
        Ok(RoomListResponse::Ok(Json(rooms.into_iter().map(Into::into).collect())))
    }

    /// A room the caller belongs to
    #[oai(path = "/chat/room/:roomId", method = "get", operation_id = "getRoom")]
    async fn get(
        &self,
        state: Data<&AppState>,
        caller: BearerAuth,
        #[oai(name = "roomId")] room_id: Path<Uuid>,
    ) -> Result<RoomResponse, MemberOnlyError> {
        let room = state.rooms.room(caller.principal().user_id, RoomId::from(room_id.0)).await?;
        Ok(RoomResponse::Ok(Json(room.into())))
    }

    /// Join a room
    ///
    /// Joining a room twice is not an error.
    #[oai(path = "/chat/room/:roomId/join", method = "post", operation_id = "joinRoom")]
    async fn join(
        &self,
        state: Data<&AppState>,
        caller: BearerAuth,
        #[oai(name = "roomId")] room_id: Path<Uuid>,
    ) -> Result<RoomResponse, MembershipError> {
        let room = state.rooms.join(caller.principal().user_id, RoomId::from(room_id.0)).await?;
        Ok(RoomResponse::Ok(Json(room.into())))
    }

    /// Leave a room
    ///
    /// Leaving a room the caller is not in is not an error. The owner may leave and stays owner.
    #[oai(path = "/chat/room/:roomId/leave", method = "post", operation_id = "leaveRoom")]
    async fn leave(
        &self,
        state: Data<&AppState>,
        caller: BearerAuth,
        #[oai(name = "roomId")] room_id: Path<Uuid>,
    ) -> Result<LeaveResponse, MembershipError> {
        state.rooms.leave(caller.principal().user_id, RoomId::from(room_id.0)).await?;
        Ok(LeaveResponse::Left)
    }

    /// A room's members
    #[oai(path = "/chat/room/:roomId/members", method = "get", operation_id = "listRoomMembers")]
    async fn members(
        &self,
        state: Data<&AppState>,
        caller: BearerAuth,
        #[oai(name = "roomId")] room_id: Path<Uuid>,
    ) -> Result<MembersResponse, MemberOnlyError> {
        let members = state.rooms.members(caller.principal().user_id, RoomId::from(room_id.0)).await?;
        Ok(MembersResponse::Ok(Json(members.into_iter().map(Into::into).collect())))
    }
}
