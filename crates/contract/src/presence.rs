//! The contract of [`Presence`]: a user is online while they hold at least one connection;
//! exactly one `connected` reports the first and exactly one `disconnected` the last, however
//! the calls interleave.

use std::collections::HashSet;
use std::sync::Arc;

use convo_domain::{Presence, UserId};

use crate::fixture::Case;

/// Every body of this module, by name.
pub fn cases<P: Presence + ?Sized + 'static>() -> Vec<Case<P>> {
    crate::presence_contract! { @bodies cases }
}

async fn connected<P: Presence + ?Sized>(presence: &P, user: UserId) -> bool {
    presence.connected(user).await.expect("connected")
}

async fn disconnected<P: Presence + ?Sized>(presence: &P, user: UserId) -> bool {
    presence.disconnected(user).await.expect("disconnected")
}

async fn online<P: Presence + ?Sized>(presence: &P, users: &[UserId]) -> HashSet<UserId> {
    presence.online_among(users).await.expect("online among")
}

pub async fn first_connection_comes_online<P: Presence + ?Sized>(presence: Arc<P>) {
    let user = UserId::generate();
    assert!(connected(&*presence, user).await, "the first connection brings the user online");
    assert!(!connected(&*presence, user).await, "a second connection changes nothing");
    assert!(!connected(&*presence, user).await);
    assert_eq!(online(&*presence, &[user]).await, HashSet::from([user]));
}

pub async fn last_disconnection_goes_offline<P: Presence + ?Sized>(presence: Arc<P>) {
    let user = UserId::generate();
    connected(&*presence, user).await;
    connected(&*presence, user).await;
    assert!(!disconnected(&*presence, user).await, "one connection is still open");
    assert_eq!(online(&*presence, &[user]).await, HashSet::from([user]));
    assert!(disconnected(&*presence, user).await, "the last connection closed");
    assert_eq!(online(&*presence, &[user]).await, HashSet::new());
    assert!(connected(&*presence, user).await, "coming back is a first connection again");
}

pub async fn online_among_reports_exactly_the_connected_users<P: Presence + ?Sized>(presence: Arc<P>) {
    let (here, twice, left, never) =
        (UserId::generate(), UserId::generate(), UserId::generate(), UserId::generate());
    connected(&*presence, here).await;
    connected(&*presence, twice).await;
    connected(&*presence, twice).await;
    connected(&*presence, left).await;
    disconnected(&*presence, left).await;
    let asked = [here, twice, left, never, here];
    assert_eq!(online(&*presence, &asked).await, HashSet::from([here, twice]));
    assert_eq!(online(&*presence, &[never]).await, HashSet::new());
    assert_eq!(online(&*presence, &[]).await, HashSet::new());
}

pub async fn stray_disconnect_does_not_go_negative<P: Presence + ?Sized>(presence: Arc<P>) {
    let user = UserId::generate();
    assert!(!disconnected(&*presence, user).await, "a user never connected cannot go offline");
    assert!(connected(&*presence, user).await, "the next connection is still the first");
    assert!(disconnected(&*presence, user).await);
    assert!(!disconnected(&*presence, user).await);
    assert_eq!(online(&*presence, &[user]).await, HashSet::new());
}

pub async fn concurrent_connections_report_one_first_and_one_last<P: Presence + ?Sized + 'static>(
    presence: Arc<P>,
) {
    let user = UserId::generate();
    let count = |reports: Vec<bool>| reports.into_iter().filter(|first| *first).count();

    let connects: Vec<_> = (0..20)
        .map(|_| {
            let presence = Arc::clone(&presence);
            tokio::spawn(async move { connected(&*presence, user).await })
        })
        .collect();
    let mut reports = Vec::new();
    for connect in connects {
        reports.push(connect.await.expect("a connect task panicked"));
    }
    assert_eq!(count(reports), 1, "exactly one connection was the first");

    let disconnects: Vec<_> = (0..20)
        .map(|_| {
            let presence = Arc::clone(&presence);
            tokio::spawn(async move { disconnected(&*presence, user).await })
        })
        .collect();
    let mut reports = Vec::new();
    for disconnect in disconnects {
        reports.push(disconnect.await.expect("a disconnect task panicked"));
    }
    assert_eq!(count(reports), 1, "exactly one connection was the last");
    assert_eq!(online(&*presence, &[user]).await, HashSet::new());
}
