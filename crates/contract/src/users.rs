//! The contract of [`UserRepository`]: users are found by id and by email in any case, and
//! emails and usernames are unique ignoring case.

use std::sync::Arc;

use convo_domain::{DomainError, Email, PasswordHash, User, UserId, UserRepository, Username};

use crate::fixture::Case;
use crate::storage::{Storage, at, user};

/// Every body of this module, by name.
pub fn cases<S: Storage + ?Sized + 'static>() -> Vec<Case<S>> {
    crate::user_repository_contract! { @bodies cases }
}

pub async fn created_user_is_found_by_id_and_by_email<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    let ada = user(store, "Ada_99").await;

    assert_eq!(store.find_by_id(ada.id).await.expect("find"), Some(ada.clone()));
    let credentials = store
        .find_credentials(&Email::parse("ADA_99@Example.com").expect("valid"))
        .await
        .expect("find credentials")
        .expect("registered");
    assert_eq!(credentials.user, ada);
    assert_eq!(credentials.password_hash.as_str(), "$argon2id$hash-of-Ada_99");
}

pub async fn unknown_users_are_not_found<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    user(store, "ada").await;
    assert_eq!(store.find_by_id(UserId::generate()).await.expect("find"), None);
    let unknown = Email::parse("nobody@example.com").expect("valid");
    assert!(store.find_credentials(&unknown).await.expect("find").is_none());
}

pub async fn email_is_unique<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    user(store, "ada").await;
    let twin = User {
        id: UserId::generate(),
        email: Email::parse("ADA@EXAMPLE.COM").expect("valid"),
        username: Username::parse("someone_else").expect("valid"),
        created_at: at(0),
    };
    let error =
        UserRepository::create(store, &twin, &PasswordHash::new("x".into())).await.expect_err("taken");
    assert!(matches!(error, DomainError::EmailTaken), "{error:?}");
}

pub async fn username_is_unique_ignoring_case<S: Storage + ?Sized>(storage: Arc<S>) {
    let store = &*storage;
    user(store, "Ada").await;
    let twin = User {
        id: UserId::generate(),
        email: Email::parse("other@example.com").expect("valid"),
        username: Username::parse("aDA").expect("valid"),
        created_at: at(0),
    };
    let error =
        UserRepository::create(store, &twin, &PasswordHash::new("x".into())).await.expect_err("taken");
    assert!(matches!(error, DomainError::UsernameTaken), "{error:?}");
}
