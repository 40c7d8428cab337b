//! Follows the sessions behind an instance's live connections, so that a connection ends soon
//! after its session does, even when the announcement of the end was missed, and never outlives
//! the token it was opened with.
//!
//! Announcements on [`Topic::Sessions`](crate::Topic::Sessions) are the fast path and stay with
//! whoever follows them. This is the safety net: one task per instance asks the
//! [`SessionStore`] about every followed session at once, every [`CHECK_EVERY`], with
//! [`SessionStore::alive_many`] (one round trip, no write), and ends the follows of each session
//! found gone. The check does not extend a session: an open connection is not activity, so a
//! session that no request uses for its idle lifetime ends, and its connections with it. While
//! the store cannot be reached, follows stay open: the next check that gets an answer decides.
//!
//! Each [`SessionFollow`] also ends on its own at the token's expiry, with no store involved.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tokio::time::{Instant, MissedTickBehavior, Sleep, sleep_until};

use crate::id::SessionId;
use crate::session::{AccessGrant, Principal, SessionStore};
use crate::session_cache::SessionCache;
use crate::sync::lock;

/// How often every followed session is checked against the store.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// The furthest ahead a token's expiry is scheduled (the timer's range is finite); a token
/// valid for longer is cut at this, which no configuration comes near.
const LONGEST_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why a followed session's connection must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The session is gone from the store: logged out, or expired unused.
    Ended,
    /// The token the connection was opened with reached its expiry.
    TokenExpired,
}

/// A live connection's follow of its session: [`SessionFollow::ended`] resolves once the
/// connection must end. Dropping it stops the following.
pub struct SessionFollow {
    /// Fires when the session is found gone; `None` once it can no longer fire.
    ended: Option<oneshot::Receiver<()>>,
    found_gone: bool,
    expiry: Pin<Box<Sleep>>,
    _registration: Option<Registration>,
}

impl std::fmt::Debug for SessionFollow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionFollow")
            .field("found_gone", &self.found_gone)
            .field("expires", &self.expires())
            .finish_non_exhaustive()
    }
}

impl SessionFollow {
    /// A follow that ends when `ended` fires (or at `expires`), for a test double of the
    /// [`AuthService`](crate::AuthService); a dropped sender never ends it.
    pub fn new(ended: oneshot::Receiver<()>, expires: Instant) -> Self {
        Self {
            ended: Some(ended),
            found_gone: false,
            expiry: Box::pin(sleep_until(expires)),
            _registration: None,
        }
    }

    /// When the token expires, at the latest.
    pub fn expires(&self) -> Instant {
        self.expiry.deadline()
    }

    /// Resolves once the connection must end, and at once on every later call. Cancel-safe:
    /// meant to be one branch of a connection's `select!`.
    pub async fn ended(&mut self) -> SessionEnd {
        if self.found_gone {
            return SessionEnd::Ended;
        }
        let found_gone = async {
            match self.ended.as_mut() {
                Some(ended) => ended.await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            gone = found_gone => {
                self.ended = None;
                if gone {
                    self.found_gone = true;
                    return SessionEnd::Ended;
                }
                // The watch is gone (the use cases were dropped): only the expiry remains.
                self.expiry.as_mut().await;
                SessionEnd::TokenExpired
            }
            () = self.expiry.as_mut() => SessionEnd::TokenExpired,
        }
    }
}

/// Removes a follow from the watch when it is dropped.
struct Registration {
    watch: Weak<Shared>,
    session: Principal,
    follower: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Some(watch) = self.watch.upgrade() else { return };
        let mut followed = lock(&watch.followed);
        if let Some(followers) = followed.get_mut(&self.session) {
            followers.remove(&self.follower);
            if followers.is_empty() {
                followed.remove(&self.session);
            }
        }
    }
}

/// The follows of one session, by follower. Sessions are kept with their user, which the
/// session cache needs to forget them.
type Followers = HashMap<u64, oneshot::Sender<()>>;

struct Shared {
    store: Arc<dyn SessionStore>,
    /// Forgets the sessions found gone, so that requests on this instance are refused at once.
    cache: Arc<SessionCache>,
    followed: Mutex<HashMap<Principal, Followers>>,
    next_follower: AtomicU64,
}

/// The instance's watch over the sessions of its live connections; its task starts with the
/// first follow and stops when the watch is dropped.
pub(crate) struct SessionWatch {
    shared: Arc<Shared>,
    task: Mutex<Option<AbortHandle>>,
}

impl std::fmt::Debug for SessionWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionWatch").field("followed", &lock(&self.shared.followed).len()).finish()
    }
}

impl Drop for SessionWatch {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

impl SessionWatch {
    pub(crate) fn new(store: Arc<dyn SessionStore>, cache: Arc<SessionCache>) -> Self {
        let shared =
            Shared { store, cache, followed: Mutex::new(HashMap::new()), next_follower: AtomicU64::new(0) };
        Self { shared: Arc::new(shared), task: Mutex::new(None) }
    }

    /// Follows the grant's session until it ends or the grant expires; `now` is the time the
    /// expiry is measured from. Must be called within a Tokio runtime.
    pub(crate) fn follow(&self, grant: &AccessGrant, now: DateTime<Utc>) -> SessionFollow {
        let left = (grant.expires_at - now).to_std().unwrap_or(Duration::ZERO).min(LONGEST_WAIT);
        let (ended, ended_rx) = oneshot::channel();
        let follower = self.shared.next_follower.fetch_add(1, Ordering::Relaxed);
        let session = grant.principal;
        lock(&self.shared.followed).entry(session).or_default().insert(follower, ended);
        self.start();
        let mut follow = SessionFollow::new(ended_rx, Instant::now() + left);
        follow._registration = Some(Registration { watch: Arc::downgrade(&self.shared), session, follower });
        follow
    }

    fn start(&self) {
        let mut task = lock(&self.task);
        if task.is_none() {
            let shared = Arc::downgrade(&self.shared);
            *task = Some(tokio::spawn(watch(shared)).abort_handle());
        }
    }
}

/// Checks every followed session each [`CHECK_EVERY`] until the watch is dropped.
async fn watch(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let followed: Vec<Principal> = lock(&shared.followed).keys().copied().collect();
        if followed.is_empty() {
            continue;
        }
        let ended = shared.check(followed).await;
        shared.end(&ended);
    }
}

impl Shared {
    /// The sessions the store no longer has, in one round trip.
    async fn check(&self, sessions: Vec<Principal>) -> Vec<Principal> {
        let ids: Vec<SessionId> = sessions.iter().map(|principal| principal.session_id).collect();
        match self.store.alive_many(&ids).await {
            Ok(alive) if alive.len() == ids.len() => sessions
                .into_iter()
                .zip(alive)
                .filter(|(_, alive)| !alive)
                .map(|(session, _)| session)
                .collect(),
            Ok(alive) => {
                tracing::error!(
                    asked = ids.len(),
                    answered = alive.len(),
                    "the session store answered amiss"
                );
                Vec::new()
            }
            Err(error) => {
                tracing::debug!(%error, "could not check live sessions; connections stay open");
                Vec::new()
            }
        }
    }

    /// Ends every follow of these sessions.
    fn end(&self, sessions: &[Principal]) {
        if sessions.is_empty() {
            return;
        }
        self.cache.forget(sessions.iter().copied());
        let mut followed = lock(&self.followed);
        for session in sessions {
            for (_, ended) in followed.remove(session).unwrap_or_default() {
                let _ = ended.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::event::{EventBus, MockEventBus};
    use crate::id::SessionId;
    use crate::id::UserId;
    use crate::session::{MockSessionStore, Principal};
    use chrono::TimeDelta;

    const TTL: Duration = Duration::from_secs(3600);

    fn cache() -> Arc<SessionCache> {
        let mut events = MockEventBus::new();
        events.expect_continuity().returning(|| None);
        crate::session_cache::session_cache(Arc::new(events) as Arc<dyn EventBus>, TTL)
    }

    fn grant(expires_in: TimeDelta) -> AccessGrant {
        let now = Utc::now();
        AccessGrant {
            principal: Principal { user_id: UserId::generate(), session_id: SessionId::generate() },
            issued_at: now,
            expires_at: now + expires_in,
        }
    }

    fn watch(store: MockSessionStore) -> SessionWatch {
        SessionWatch::new(Arc::new(store), cache())
    }

    fn far() -> TimeDelta {
        TimeDelta::days(7)
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_found_gone_ends_its_follows_within_a_check_and_no_other() {
        let (gone, kept) = (grant(far()), grant(far()));
        let revoked = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&revoked);
        let gone_id = gone.principal.session_id;
        let mut store = MockSessionStore::new();
        store.expect_alive_many().returning(move |ids| {
            Ok(ids.iter().map(|id| !(*id == gone_id && seen.load(Ordering::SeqCst))).collect())
        });
        let watch = watch(store);
        let now = Utc::now();
        let (mut first, mut second) = (watch.follow(&gone, now), watch.follow(&gone, now));
        let mut other = watch.follow(&kept, now);

        tokio::time::sleep(Duration::from_secs(5)).await;
        revoked.store(true, Ordering::SeqCst);
        let started = Instant::now();
        assert_eq!(first.ended().await, SessionEnd::Ended);
        assert!(started.elapsed() <= CHECK_EVERY, "ended after {:?}", started.elapsed());
        assert_eq!(second.ended().await, SessionEnd::Ended, "every connection of the session");
        assert_eq!(first.ended().await, SessionEnd::Ended, "and it stays ended");
        let still_open = tokio::time::timeout(Duration::from_secs(10), other.ended()).await;
        assert!(still_open.is_err(), "another session's follow goes on");
    }

    #[tokio::test(start_paused = true)]
    async fn each_check_asks_once_about_every_followed_session_and_extends_none() {
        let (shared, alone) = (grant(far()), grant(far()));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&asked);
        let mut store = MockSessionStore::new();
        store.expect_alive_many().returning(move |ids| {
            let mut ids = ids.to_vec();
            ids.sort();
            lock(&log).push(ids.clone());
            Ok(vec![true; ids.len()])
        });
        store.expect_touch().never();
        let watch = watch(store);
        let now = Utc::now();
        let follows: Vec<_> =
            [&shared, &shared, &shared, &alone].iter().map(|g| watch.follow(g, now)).collect();

        tokio::time::sleep(Duration::from_millis(3500)).await;
        let mut expected = vec![shared.principal.session_id, alone.principal.session_id];
        expected.sort();
        let asked = lock(&asked).clone();
        assert_eq!(asked.len(), 4, "one call per second (the first at once), not one per connection");
        assert!(asked.iter().all(|ids| *ids == expected), "{asked:?}");
        drop(follows);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_follow_is_no_longer_asked_about() {
        let (dropped, kept) = (grant(far()), grant(far()));
        let dropped_id = dropped.principal.session_id;
        let mut store = MockSessionStore::new();
        let after_drop = Arc::new(AtomicBool::new(false));
        let checking = Arc::clone(&after_drop);
        store.expect_alive_many().returning(move |ids| {
            assert!(
                !(checking.load(Ordering::SeqCst) && ids.contains(&dropped_id)),
                "asked about a dropped follow"
            );
            Ok(vec![true; ids.len()])
        });
        let watch = watch(store);
        let now = Utc::now();
        let follow = watch.follow(&dropped, now);
        let _kept = watch.follow(&kept, now);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        drop(follow);
        after_drop.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(lock(&watch.shared.followed).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_follow_ends_at_the_tokens_expiry_and_not_before() {
        let mut store = MockSessionStore::new();
        store.expect_alive_many().returning(|ids| Ok(vec![true; ids.len()]));
        let watch = watch(store);
        let token = grant(TimeDelta::seconds(10));
        let started = Instant::now();
        let mut follow = watch.follow(&token, token.issued_at);
        assert_eq!(follow.ended().await, SessionEnd::TokenExpired);
        assert_eq!(started.elapsed().as_secs(), 10, "ended after {:?}", started.elapsed());

        let expired = grant(TimeDelta::seconds(-1));
        let started = Instant::now();
        assert_eq!(watch.follow(&expired, Utc::now()).ended().await, SessionEnd::TokenExpired);
        assert_eq!(started.elapsed(), Duration::ZERO, "an expired token ends its follow at once");
    }

    #[tokio::test(start_paused = true)]
    async fn while_the_store_cannot_answer_follows_stay_open() {
        let mut store = MockSessionStore::new();
        store.expect_alive_many().returning(|_| Err(crate::DomainError::unavailable("sessions", "down")));
        let watch = watch(store);
        let mut follow = watch.follow(&grant(far()), Utc::now());
        assert!(tokio::time::timeout(Duration::from_secs(30), follow.ended()).await.is_err());
    }
}
