//! Chat rooms, with the counter that hands out their message seqs.

use sea_orm_migration::sea_orm::DbBackend;
use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261125_000001_create_users::Users;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub(crate) enum Rooms {
    Table,
    Id,
    Name,
    /// `RoomName::key()` (full Unicode lower case): uniqueness and directory prefix search.
    NameKey,
    OwnerId,
    CreatedAt,
    /// The seq of the latest message; a send increments it in the same transaction as the insert.
    LastSeq,
    LastMessageAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut name_key = text(Rooms::NameKey);
        // The directory searches `name_key >= prefix AND name_key < successor(prefix)`, which
        // can use the index only if the index orders strings by code point. SQLite's default
        // BINARY collation does; on PostgreSQL the column would otherwise take the database's
        // collation (say en_US.UTF-8), whose order differs and would return wrong ranges.
        if manager.get_database_backend() == DbBackend::Postgres {
            name_key.extra(r#"COLLATE "C""#);
        }
        manager
            .create_table(
                Table::create()
                    .table(Rooms::Table)
                    .col(pk_uuid(Rooms::Id))
                    .col(text(Rooms::Name))
                    .col(name_key)
                    .col(uuid(Rooms::OwnerId))
                    .col(timestamp_with_time_zone(Rooms::CreatedAt))
                    .col(big_integer(Rooms::LastSeq).default(0))
                    .col(timestamp_with_time_zone_null(Rooms::LastMessageAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_rooms_owner_id")
                            .from(Rooms::Table, Rooms::OwnerId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_rooms_name_key")
                    .table(Rooms::Table)
                    .col(Rooms::NameKey)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Rooms::Table).to_owned()).await
    }
}
