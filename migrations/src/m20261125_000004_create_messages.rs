//! Messages, numbered per room.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261125_000001_create_users::Users;
use crate::m20261125_000002_create_rooms::Rooms;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    RoomId,
    Seq,
    AuthorId,
    Content,
    CreatedAt,
    EditedAt,
    /// Soft delete: the row stays so that its seq is never handed out again.
    DeletedAt,
    ClientMessageId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .col(pk_uuid(Messages::Id))
                    .col(uuid(Messages::RoomId))
                    .col(big_integer(Messages::Seq))
                    .col(uuid(Messages::AuthorId))
                    .col(text(Messages::Content))
                    .col(timestamp_with_time_zone(Messages::CreatedAt))
                    .col(timestamp_with_time_zone_null(Messages::EditedAt))
                    .col(timestamp_with_time_zone_null(Messages::DeletedAt))
                    .col(text_null(Messages::ClientMessageId))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_messages_room_id")
                            .from(Messages::Table, Messages::RoomId)
                            .to(Rooms::Table, Rooms::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_messages_author_id")
                            .from(Messages::Table, Messages::AuthorId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // History pages are ranges of seq within a room; the uniqueness is a last line of
        // defence behind the per-room counter.
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_room_id_seq")
                    .table(Messages::Table)
                    .col(Messages::RoomId)
                    .col(Messages::Seq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Idempotent sends: one message per (author, client key). NULL keys never collide, on
        // both databases. Also serves the look-up by key and the author foreign key.
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_author_id_client_message_id")
                    .table(Messages::Table)
                    .col(Messages::AuthorId)
                    .col(Messages::ClientMessageId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Messages::Table).to_owned()).await
    }
}
