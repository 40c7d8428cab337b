//! Rooms and memberships: creating, listing, joining, leaving, and who is in a room. The
//! inbound port [`RoomService`] and its implementation by [`ChatUseCases`].

use async_trait::async_trait;

use super::ChatUseCases;
use crate::error::DomainResult;
use crate::event::Event;
use crate::id::{RoomId, UserId};
use crate::room::{DirectoryQuery, Member, NewRoom, Room, RoomName, RoomSummary};

/// Rooms and memberships, as the api's room routes and WebSocket gateway call them: the inbound
/// port that [`ChatUseCases`] implements.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RoomService: Send + Sync {
    /// Creates a room owned by `owner`, who becomes its first member.
    async fn create_room(&self, owner: UserId, name: RoomName) -> DomainResult<Room>;

    /// The user's rooms, most recently active first.
    async fn rooms_of(&self, user: UserId) -> DomainResult<Vec<RoomSummary>>;

    /// Every room whose name starts with the prefix, by name.
    async fn directory(&self, query: &DirectoryQuery) -> DomainResult<Vec<Room>>;

    /// A room the user belongs to.
    async fn room(&self, user: UserId, room: RoomId) -> DomainResult<Room>;

    /// Adds the user to the room; joining twice changes nothing.
    async fn join(&self, user: UserId, room: RoomId) -> DomainResult<Room>;

    /// Removes the user from the room; leaving twice changes nothing.
    async fn leave(&self, user: UserId, room: RoomId) -> DomainResult<()>;

    /// The room's members with their online flags, for a member.
    async fn members(&self, user: UserId, room: RoomId) -> DomainResult<Vec<Member>>;
}

#[async_trait]
impl RoomService for ChatUseCases {
    async fn create_room(&self, owner: UserId, name: RoomName) -> DomainResult<Room> {
        let room =
            NewRoom { id: RoomId::generate(), name, owner_id: owner, created_at: self.ports.clock.now() };
        self.ports.rooms.create(&room).await
    }

    async fn rooms_of(&self, user: UserId) -> DomainResult<Vec<RoomSummary>> {
        self.ports.rooms.rooms_of(user).await
    }

    async fn directory(&self, query: &DirectoryQuery) -> DomainResult<Vec<Room>> {
        self.ports.rooms.directory(query).await
    }

    async fn room(&self, user: UserId, room: RoomId) -> DomainResult<Room> {
        self.require_member(room, user).await?;
        self.find_room(room).await
    }

    async fn join(&self, user: UserId, room: RoomId) -> DomainResult<Room> {
        if self.ports.rooms.join(room, user, self.ports.clock.now()).await? {
            let user = self.user_ref(user).await?;
            self.announce(Event::MemberJoined { room_id: room, user }).await;
        }
        self.find_room(room).await
    }

    async fn leave(&self, user: UserId, room: RoomId) -> DomainResult<()> {
        self.find_room(room).await?;
        let left = self.ports.rooms.leave(room, user).await?;
        // Whatever storage answered, this instance stops trusting the membership now.
        self.memory.member_left(room, user);
        if left {
            // The end of the membership reaches every instance even if the leaver's name cannot
            // be read for the room subscribers' `MemberLeft`.
            let mut events = vec![Event::MembershipEnded { room_id: room, user_id: user }];
            let leaver = self.user_ref(user).await;
            if let Ok(user) = &leaver {
                events.push(Event::MemberLeft { room_id: room, user: user.clone() });
            }
            self.announce_all(events).await;
            leaver?;
        }
        Ok(())
    }

    async fn members(&self, user: UserId, room: RoomId) -> DomainResult<Vec<Member>> {
        self.require_member(room, user).await?;
        let mut members = self.ports.rooms.members(room).await?;
        let ids: Vec<UserId> = members.iter().map(|member| member.user_id).collect();
        let online = self.ports.presence.online_among(&ids).await?;
        for member in &mut members {
            member.online = online.contains(&member.user_id);
        }
        Ok(members)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::chat::test_support::Mocks;
    use crate::user::Username;

    #[tokio::test]
    async fn joining_announces_only_a_new_membership() {
        let (room, user) = (RoomId::generate(), UserId::generate());
        let mut mocks = Mocks::new();
        let mut first = true;
        mocks.rooms.expect_join().times(2).returning(move |_, _, _| Ok(std::mem::replace(&mut first, false)));
        mocks.users.expect_find_by_id().returning(move |id| {
            Ok(Some(crate::user::User {
                id,
                email: crate::user::Email::parse("a@example.com").unwrap(),
                username: Username::parse("ada").unwrap(),
                created_at: Utc::now(),
            }))
        });
        mocks
            .events
            .expect_publish()
            .withf(move |event| matches!(event, Event::MemberJoined { room_id, user: joined } if *room_id == room && joined.id == user))
            .times(1)
            .returning(|_| Ok(()));
        mocks.rooms.expect_find().returning(move |_| {
            Ok(Some(Room {
                id: room,
                name: RoomName::parse("r").unwrap(),
                owner_id: user,
                created_at: Utc::now(),
                member_count: 1,
                last_seq: 0,
            }))
        });
        let service = mocks.service();
        service.join(user, room).await.unwrap();
        service.join(user, room).await.unwrap();
    }

    #[tokio::test]
    async fn members_carry_their_online_flag() {
        let (room, online, offline) = (RoomId::generate(), UserId::generate(), UserId::generate());
        let mut mocks = Mocks::new();
        mocks.member_of_every_room();
        mocks.rooms.expect_members().returning(move |_| {
            Ok([online, offline]
                .into_iter()
                .map(|user_id| Member {
                    user_id,
                    username: Username::parse("someone").unwrap(),
                    joined_at: Utc::now(),
                    online: false,
                })
                .collect())
        });
        mocks.presence.expect_online_among().returning(move |_| Ok([online].into_iter().collect()));
        let members = mocks.service().members(online, room).await.unwrap();
        let flags: Vec<(UserId, bool)> = members.iter().map(|m| (m.user_id, m.online)).collect();
        assert_eq!(flags, [(online, true), (offline, false)]);
    }
}
