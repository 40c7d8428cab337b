//! The contract of [`SessionStore`]: sessions live for `ttl` after their last touch, each one
//! ends on its own, a user's sessions end together on `revoke_all`, and many can be checked at
//! once without extending any.

use std::sync::Arc;
use std::time::Duration;

use convo_domain::{Session, SessionId, SessionStore, UserId};
use tokio::time::sleep;

use crate::fixture::{Case, now};

/// The TTL of sessions meant to expire during a body.
const SHORT: Duration = Duration::from_secs(1);
/// Comfortably past [`SHORT`].
const PAST_SHORT: Duration = Duration::from_millis(1200);
/// The TTL of sessions that must outlive a body.
const LONG: Duration = Duration::from_secs(60);

/// Every body of this module, by name.
pub fn cases<S: SessionStore + ?Sized + 'static>() -> Vec<Case<S>> {
    crate::session_store_contract! { @bodies cases }
}

fn new_session(user: UserId) -> Session {
    Session { id: SessionId::generate(), user_id: user, created_at: now() }
}

async fn create<S: SessionStore + ?Sized>(store: &S, user: UserId, ttl: Duration) -> Session {
    let session = new_session(user);
    store.create(&session, ttl).await.expect("create a session");
    session
}

async fn touch<S: SessionStore + ?Sized>(store: &S, id: SessionId, ttl: Duration) -> Option<Session> {
    store.touch(id, ttl).await.expect("touch a session")
}

fn sorted(mut ids: Vec<SessionId>) -> Vec<SessionId> {
    ids.sort();
    ids
}

pub async fn create_then_touch_returns_the_session<S: SessionStore + ?Sized>(store: Arc<S>) {
    let session = create(&*store, UserId::generate(), LONG).await;
    assert_eq!(touch(&*store, session.id, LONG).await, Some(session.clone()));
    assert_eq!(touch(&*store, session.id, LONG).await, Some(session), "a touch does not end the session");
}

pub async fn touch_of_an_unknown_session_is_none<S: SessionStore + ?Sized>(store: Arc<S>) {
    create(&*store, UserId::generate(), LONG).await;
    assert_eq!(touch(&*store, SessionId::generate(), LONG).await, None);
}

pub async fn session_expires_after_its_ttl_without_touch<S: SessionStore + ?Sized>(store: Arc<S>) {
    let user = UserId::generate();
    let short = create(&*store, user, SHORT).await;
    let long = create(&*store, user, LONG).await;
    sleep(PAST_SHORT).await;
    assert_eq!(touch(&*store, short.id, SHORT).await, None, "a session left alone for its ttl is gone");
    assert_eq!(touch(&*store, long.id, LONG).await, Some(long), "another session's ttl is its own");
}

pub async fn touch_slides_the_expiry<S: SessionStore + ?Sized>(store: Arc<S>) {
    let session = create(&*store, UserId::generate(), SHORT).await;
    sleep(SHORT.mul_f64(0.6)).await;
    assert_eq!(touch(&*store, session.id, SHORT).await, Some(session.clone()));
    // 1.2 ttl after creation: alive only because the touch extended it.
    sleep(SHORT.mul_f64(0.6)).await;
    assert_eq!(
        touch(&*store, session.id, SHORT).await,
        Some(session.clone()),
        "the touch extended the session"
    );
    sleep(PAST_SHORT).await;
    assert_eq!(touch(&*store, session.id, SHORT).await, None, "untouched for its ttl, it ends");
}

pub async fn revoke_ends_only_that_session<S: SessionStore + ?Sized>(store: Arc<S>) {
    let user = UserId::generate();
    let phone = create(&*store, user, LONG).await;
    let laptop = create(&*store, user, LONG).await;
    assert!(store.revoke(user, phone.id).await.expect("revoke"), "a live session is revoked");
    assert_eq!(touch(&*store, phone.id, LONG).await, None);
    assert_eq!(touch(&*store, laptop.id, LONG).await, Some(laptop), "the user's other session survives");
}

pub async fn second_revoke_returns_false<S: SessionStore + ?Sized>(store: Arc<S>) {
    let user = UserId::generate();
    let session = create(&*store, user, LONG).await;
    assert!(store.revoke(user, session.id).await.expect("revoke"));
    assert!(!store.revoke(user, session.id).await.expect("revoke again"), "it had already ended");
    assert!(!store.revoke(user, SessionId::generate()).await.expect("revoke unknown"), "it never existed");
}

pub async fn revoke_of_an_expired_session_returns_false<S: SessionStore + ?Sized>(store: Arc<S>) {
    let user = UserId::generate();
    let session = create(&*store, user, SHORT).await;
    sleep(PAST_SHORT).await;
    assert!(!store.revoke(user, session.id).await.expect("revoke"), "an expired session had already ended");
}

pub async fn revoke_all_ends_every_session_of_the_user_only<S: SessionStore + ?Sized>(store: Arc<S>) {
    let user = UserId::generate();
    let other_user = UserId::generate();
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(create(&*store, user, LONG).await);
    }
    let theirs = create(&*store, other_user, LONG).await;

    let ended = store.revoke_all(user).await.expect("revoke all");
    assert_eq!(
        sorted(ended),
        sorted(mine.iter().map(|session| session.id).collect()),
        "exactly the user's sessions"
    );
    for session in &mine {
        assert_eq!(touch(&*store, session.id, LONG).await, None);
    }
    assert_eq!(touch(&*store, theirs.id, LONG).await, Some(theirs), "another user's session survives");
    assert_eq!(store.revoke_all(user).await.expect("revoke all again"), Vec::<SessionId>::new());
}

pub async fn revoke_all_leaves_out_expired_sessions<S: SessionStore + ?Sized>(store: Arc<S>) {
    let user = UserId::generate();
    create(&*store, user, SHORT).await;
    let alive = create(&*store, user, LONG).await;
    sleep(PAST_SHORT).await;
    assert_eq!(
        store.revoke_all(user).await.expect("revoke all"),
        vec![alive.id],
        "only sessions that were alive"
    );
}

pub async fn revoke_all_of_a_user_without_sessions_is_empty<S: SessionStore + ?Sized>(store: Arc<S>) {
    let other = create(&*store, UserId::generate(), LONG).await;
    assert_eq!(store.revoke_all(UserId::generate()).await.expect("revoke all"), Vec::<SessionId>::new());
    assert_eq!(touch(&*store, other.id, LONG).await, Some(other));
}

pub async fn alive_many_answers_for_each_session_in_order<S: SessionStore + ?Sized>(store: Arc<S>) {
    let user = UserId::generate();
    let (first, revoked, expired, last) = (
        create(&*store, user, LONG).await,
        create(&*store, user, LONG).await,
        create(&*store, user, SHORT).await,
        create(&*store, UserId::generate(), LONG).await,
    );
    assert!(store.revoke(user, revoked.id).await.expect("revoke"));
    sleep(PAST_SHORT).await;
    let asked = [first.id, revoked.id, SessionId::generate(), expired.id, last.id, first.id];
    assert_eq!(
        store.alive_many(&asked).await.expect("check sessions"),
        vec![true, false, false, false, true, true],
        "alive, revoked, never created, expired, alive, and a repeat"
    );
    assert_eq!(store.alive_many(&[]).await.expect("check no session"), Vec::<bool>::new());
}

pub async fn alive_many_does_not_extend_a_session<S: SessionStore + ?Sized>(store: Arc<S>) {
    let session = create(&*store, UserId::generate(), SHORT).await;
    // Checked all along its life, it still ends a ttl after creation: a check is not activity.
    for _ in 0..4 {
        assert_eq!(store.alive_many(&[session.id]).await.expect("check"), vec![true]);
        sleep(SHORT / 5).await;
    }
    sleep(SHORT / 2).await;
    assert_eq!(store.alive_many(&[session.id]).await.expect("check"), vec![false], "not extended");
}
