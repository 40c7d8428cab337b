//! Follows the sessions behind an instance's live connections, so that a connection ends soon
//! after its session does, even when the announcement of the end was missed, and never outlives
//! the token it was opened with.
//!
//! Announcements on [`Topic::Sessions`](crate::Topic::Sessions) are the fast path and stay with
//! whoever follows them. This is the safety net: one task per instance asks the
//! [`SessionStore`] about every followed session at once, every [`CHECK_EVERY`], with
//! [`SessionStore::alive_many`] (one round trip, no write), and ends the follows of each session
//! found gone. The check does not extend a session, since an open connection is not activity;
//! a connection's frames are, and a session whose connections sent frames since the last check
//! is touched instead (which extends it as a request would, and finds it gone the same way), at
//! most once per quarter of its idle lifetime. A session neither requests nor
//! frames use for its idle lifetime ends, and its connections with it. While the store cannot
//! be reached, follows stay open: the next check that gets an answer decides.
//!
//! Each [`SessionFollow`] also ends on its own at the token's expiry, with no store involved.

use std::collections::{HashMap, HashSet};
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
/// A session in use over a connection is extended at most once per this part of its idle
/// lifetime (a quarter: it never comes near expiring while frames keep coming).
const SLIDE_EVERY_PART: u32 = 4;
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

    /// Notes that the connection was used (a frame from its client): activity, which extends
    /// the session at the watch's next check.
    pub fn note_activity(&self) {
        if let Some(registration) = &self._registration
            && let Some(watch) = registration.watch.upgrade()
        {
            lock(&watch.active).insert(registration.session);
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
    /// Followed sessions whose connections sent frames since the last check.
    active: Mutex<HashSet<Principal>>,
    /// When each session in use was last extended here.
    extended: Mutex<HashMap<Principal, Instant>>,
    session_ttl: Duration,
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
    pub(crate) fn new(store: Arc<dyn SessionStore>, cache: Arc<SessionCache>, session_ttl: Duration) -> Self {
        let shared = Shared {
            store,
            cache,
            followed: Mutex::new(HashMap::new()),
            active: Mutex::new(HashSet::new()),
            extended: Mutex::new(HashMap::new()),
            session_ttl,
            next_follower: AtomicU64::new(0),
        };
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
        let (in_use, idle) = shared.split_in_use(followed);
        let mut ended = shared.extend(in_use).await;
        ended.extend(shared.check(idle).await);
        shared.end(&ended);
    }
}

impl Shared {
    /// The followed sessions due to be extended (used since the last check, and not extended
    /// for a while), and the rest.
    fn split_in_use(&self, followed: Vec<Principal>) -> (Vec<Principal>, Vec<Principal>) {
        let active = std::mem::take(&mut *lock(&self.active));
        let mut extended = lock(&self.extended);
        extended.retain(|session, _| followed.contains(session));
        let now = Instant::now();
        let slide_every = self.session_ttl / SLIDE_EVERY_PART;
        followed.into_iter().partition(|session| {
            active.contains(session)
                && extended.get(session).is_none_or(|last| now.duration_since(*last) >= slide_every)
        })
    }

    /// Extends each session in use, as a request would; answers the ones the store no longer
    /// has. One touch per session, however many connections it has.
    async fn extend(&self, sessions: Vec<Principal>) -> Vec<Principal> {
        let mut ended = Vec::new();
        for session in sessions {
            match self.store.touch(session.session_id, self.session_ttl).await {
                Ok(Some(_)) => {
                    lock(&self.extended).insert(session, Instant::now());
                }
                Ok(None) => ended.push(session),
                Err(error) => {
                    tracing::debug!(%error, "could not extend a live session; its connections stay open");
                }
            }
        }
        ended
    }

    /// The sessions the store no longer has, in one round trip.
    async fn check(&self, sessions: Vec<Principal>) -> Vec<Principal> {
        if sessions.is_empty() {
            return Vec::new();
        }
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
        SessionWatch::new(Arc::new(store), cache(), TTL)
    }

    fn session_of(grant: &AccessGrant) -> crate::session::Session {
        crate::session::Session {
            id: grant.principal.session_id,
            user_id: grant.principal.user_id,
            created_at: grant.issued_at,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_used_over_its_connection_is_extended_at_most_once_per_quarter_of_its_lifetime() {
        let (used, unused) = (grant(far()), grant(far()));
        let touches = Arc::new(Mutex::new(0usize));
        let counted = Arc::clone(&touches);
        let (used_id, alive) = (used.principal.session_id, session_of(&used));
        let mut store = MockSessionStore::new();
        store.expect_touch().withf(move |id, ttl| *id == used_id && *ttl == TTL).returning(move |_, _| {
            *lock(&counted) += 1;
            Ok(Some(alive.clone()))
        });
        store.expect_alive_many().returning(|ids| Ok(vec![true; ids.len()]));
        let watch = watch(store);
        let now = Utc::now();
        let (follow, _idle) = (watch.follow(&used, now), watch.follow(&unused, now));

        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(*lock(&touches), 0, "an open connection alone is not activity");
        follow.note_activity();
        tokio::time::sleep(CHECK_EVERY).await;
        assert_eq!(*lock(&touches), 1, "a frame extends the session at the next check");
        for _ in 0..5 {
            follow.note_activity();
            tokio::time::sleep(CHECK_EVERY).await;
        }
        assert_eq!(*lock(&touches), 1, "not again within a quarter of its lifetime");
        tokio::time::sleep(TTL / SLIDE_EVERY_PART).await;
        follow.note_activity();
        tokio::time::sleep(CHECK_EVERY).await;
        assert_eq!(*lock(&touches), 2, "and again once a quarter has passed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_in_use_found_gone_when_extended_ends_its_follows() {
        let used = grant(far());
        let mut store = MockSessionStore::new();
        store.expect_touch().returning(|_, _| Ok(None));
        store.expect_alive_many().returning(|ids| Ok(vec![true; ids.len()]));
        let watch = watch(store);
        let mut follow = watch.follow(&used, Utc::now());
        follow.note_activity();
        let ended = tokio::time::timeout(CHECK_EVERY * 2, follow.ended()).await;
        assert_eq!(ended.ok(), Some(SessionEnd::Ended));
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
