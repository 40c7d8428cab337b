//! `UserRepository`: registered users and their password hashes.

use async_trait::async_trait;
use convo_domain::{
    Credentials, DomainError, DomainResult, Email, PasswordHash, User, UserId, UserRepository, Username,
};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use crate::entity::user;
use crate::error::{db_error, unique_violation};
use crate::store::{SqlStore, stored};

#[async_trait]
impl UserRepository for SqlStore {
    async fn create(&self, new: &User, password_hash: &PasswordHash) -> DomainResult<()> {
        let row = user::ActiveModel {
            id: Set(new.id.as_uuid()),
            email: Set(new.email.as_str().to_owned()),
            username: Set(new.username.as_str().to_owned()),
            username_key: Set(new.username.key()),
            password_hash: Set(password_hash.as_str().to_owned()),
            created_at: Set(stored(new.created_at)),
        };
        match user::Entity::insert(row).exec_without_returning(&self.db).await {
            Ok(_) => Ok(()),
            Err(error) => Err(match unique_violation(&error) {
                // Index `idx_users_email` / column `users.email`.
                Some(message) if message.contains("email") => DomainError::EmailTaken,
                // Index `idx_users_username_key` / column `users.username_key`.
                Some(message) if message.contains("username_key") => DomainError::UsernameTaken,
                _ => db_error(error),
            }),
        }
    }

    async fn find_by_id(&self, id: UserId) -> DomainResult<Option<User>> {
        let row = user::Entity::find_by_id(id.as_uuid()).one(&self.db).await.map_err(db_error)?;
        Ok(row.map(to_user))
    }

    async fn find_credentials(&self, email: &Email) -> DomainResult<Option<Credentials>> {
        let row = user::Entity::find()
            .filter(user::Column::Email.eq(email.as_str()))
            .one(&self.db)
            .await
            .map_err(db_error)?;
        Ok(row.map(|mut row| {
            let password_hash = PasswordHash::new(std::mem::take(&mut row.password_hash));
            Credentials { user: to_user(row), password_hash }
        }))
    }
}

fn to_user(row: user::Model) -> User {
    User {
        id: UserId::from_uuid(row.id),
        email: Email::from_trusted(row.email),
        username: Username::from_trusted(row.username),
        created_at: row.created_at,
    }
}
