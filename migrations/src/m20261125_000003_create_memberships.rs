//! Who belongs to which room.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261125_000001_create_users::Users;
use crate::m20261125_000002_create_rooms::Rooms;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub(crate) enum Memberships {
    Table,
    RoomId,
    UserId,
    JoinedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Memberships::Table)
                    .col(uuid(Memberships::RoomId))
                    .col(uuid(Memberships::UserId))
                    .col(timestamp_with_time_zone(Memberships::JoinedAt))
                    // Serves "members of a room" and "is this user a member".
                    .primary_key(Index::create().col(Memberships::RoomId).col(Memberships::UserId))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_memberships_room_id")
                            .from(Memberships::Table, Memberships::RoomId)
                            .to(Rooms::Table, Rooms::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_memberships_user_id")
                            .from(Memberships::Table, Memberships::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Serves "the rooms of a user".
        manager
            .create_index(
                Index::create()
                    .name("idx_memberships_user_id")
                    .table(Memberships::Table)
                    .col(Memberships::UserId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Memberships::Table).to_owned()).await
    }
}
