//! The authentication use cases: register, log in, check a token, log out.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::OnceCell;

use crate::clock::Clock;
use crate::error::{DomainError, DomainResult};
use crate::event::{Event, EventBus};
use crate::id::{SessionId, UserId};
use crate::rate_limit::{RateDecision, RateLimit, RateLimiter};
use crate::session::{AccessGrant, Principal, Session, SessionStore, TicketStore, TokenCodec};
use crate::session_cache::{Lookup, SessionCache, session_cache};
use crate::session_watch::{SessionFollow, SessionWatch};
use crate::user::{Email, Password, PasswordHash, PasswordHasher, User, UserRepository, Username};

/// How sessions and login throttling behave.
#[derive(Debug, Clone, Copy)]
pub struct AuthSettings {
    /// A session left unused this long ends (`SESSION_TTL`).
    pub session_ttl: Duration,
    /// The hard limit on a token's life, whatever the activity: its `exp`.
    pub token_lifetime: Duration,
    /// Failed logins allowed per email.
    pub failed_logins_per_email: RateLimit,
    /// Failed logins allowed per client address.
    pub failed_logins_per_address: RateLimit,
    /// Registration attempts allowed per client address, whatever their outcome.
    pub registrations_per_address: RateLimit,
}

impl Default for AuthSettings {
    fn default() -> Self {
        let quarter_hour = Duration::from_secs(15 * 60);
        Self {
            session_ttl: Duration::from_secs(3600),
            token_lifetime: Duration::from_secs(7 * 24 * 3600),
            failed_logins_per_email: RateLimit { points: 5, window: quarter_hour },
            failed_logins_per_address: RateLimit { points: 50, window: quarter_hour },
            registrations_per_address: RateLimit { points: 20, window: quarter_hour },
        }
    }
}

/// A fresh session and the token that names it.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The signed bearer token the client sends back; it names `session_id` and stops being
    /// accepted when the session ends or at its own expiry, whichever comes first.
    pub access_token: String,
    /// How long the session lasts without activity.
    pub expires_in: Duration,
    /// The session just opened.
    pub session_id: SessionId,
    /// Who the session belongs to.
    pub user: User,
}

/// How long a connect ticket may wait to be redeemed.
pub const CONNECT_TICKET_TTL: Duration = Duration::from_secs(30);

/// A single-use ticket that opens one live connection as the principal it was issued to.
#[derive(Debug, Clone)]
pub struct ConnectTicket {
    /// The opaque, URL-safe secret to present when connecting (244 random bits).
    pub ticket: String,
    /// How long the ticket stays redeemable ([`CONNECT_TICKET_TTL`]).
    pub expires_in: Duration,
}

/// The ports authentication needs.
#[derive(Clone)]
pub struct AuthPorts {
    /// Where accounts are stored and looked up by email.
    pub users: Arc<dyn UserRepository>,
    /// Hashes new passwords and checks a login's against the stored hash.
    pub hasher: Arc<dyn PasswordHasher>,
    /// The server-side sessions that tokens name; ending one revokes its token.
    pub sessions: Arc<dyn SessionStore>,
    /// The single-use connect tickets.
    pub tickets: Arc<dyn TicketStore>,
    /// Signs access tokens and checks the ones presented.
    pub tokens: Arc<dyn TokenCodec>,
    /// Counts failed logins per email and per client address.
    pub limiter: Arc<dyn RateLimiter>,
    /// Announces revoked sessions, so live connections on every instance close and no instance
    /// keeps trusting them from memory.
    pub events: Arc<dyn EventBus>,
    /// The time sessions and tokens are stamped with.
    pub clock: Arc<dyn Clock>,
}

/// The authentication use cases, as the api calls them: the inbound port that
/// [`AuthUseCases`] implements.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AuthService: Send + Sync {
    /// Creates the user and logs them in. Every attempt from a client address counts against
    /// its registration budget, before the password is hashed; past it, `TooManyAttempts`.
    async fn register(
        &self,
        email: Email,
        username: Username,
        password: Password,
        client: Option<IpAddr>,
    ) -> DomainResult<IssuedToken>;

    /// Checks the password and opens a session. Failed attempts count against the email and the
    /// client address; past either budget, even a right password is refused until the window ends.
    async fn login(
        &self,
        email: Email,
        password: Password,
        client: Option<IpAddr>,
    ) -> DomainResult<IssuedToken>;

    /// What a bearer token grants, if its session is alive; extends the session.
    async fn authenticate(&self, token: &str) -> DomainResult<AccessGrant>;

    /// `Unauthenticated` unless the principal's session is alive; a live session is extended,
    /// as any activity extends it.
    async fn check_session(&self, principal: &Principal) -> DomainResult<()>;

    /// A ticket that opens one live connection with the caller's grant within
    /// [`CONNECT_TICKET_TTL`], for clients that cannot present their token when they connect (a
    /// browser opening a WebSocket cannot set an `Authorization` header). The connection ends
    /// at the expiry of the token the ticket was asked with, as if opened with that token.
    async fn issue_connect_ticket(&self, grant: &AccessGrant) -> DomainResult<ConnectTicket>;

    /// The grant a connect ticket was issued for, once, while its session lives and its token
    /// has not expired.
    async fn redeem_connect_ticket(&self, ticket: &str) -> DomainResult<AccessGrant>;

    /// Follows the grant's session for a live connection: the follow ends within
    /// [`CHECK_EVERY`](crate::session_watch::CHECK_EVERY) of the session ending, whether or not
    /// its announcement is heard, and at the token's expiry at the latest. Following alone is
    /// not activity; [`SessionFollow::note_activity`] (a frame from the connection's client) is,
    /// and extends the session at the next check.
    fn follow_session(&self, grant: &AccessGrant) -> SessionFollow;

    /// The caller's own account.
    async fn me(&self, principal: &Principal) -> DomainResult<User>;

    /// Ends the caller's session, everywhere at once.
    async fn logout(&self, principal: &Principal) -> DomainResult<()>;

    /// Ends every session of the caller.
    async fn logout_all(&self, principal: &Principal) -> DomainResult<()>;
}

/// The authentication use cases, implemented over the outbound ports.
pub struct AuthUseCases {
    ports: AuthPorts,
    settings: AuthSettings,
    /// Checked against when the email is unknown, so that such a login costs what a wrong
    /// password costs and timing does not reveal who is registered.
    decoy_hash: OnceCell<PasswordHash>,
    /// Sessions recently found alive, trusted without a store round trip while the revocation
    /// announcements of every instance are heard.
    sessions: Arc<SessionCache>,
    /// The sessions of this instance's live connections, checked against the store together.
    watch: SessionWatch,
}

impl std::fmt::Debug for AuthUseCases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthUseCases").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl AuthUseCases {
    /// The use cases over these ports, with these settings.
    pub fn new(ports: AuthPorts, settings: AuthSettings) -> Self {
        let sessions = session_cache(Arc::clone(&ports.events), settings.session_ttl);
        let watch =
            SessionWatch::new(Arc::clone(&ports.sessions), Arc::clone(&sessions), settings.session_ttl);
        Self { ports, settings, decoy_hash: OnceCell::new(), sessions, watch }
    }

    /// How sessions and login throttling behave here.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    async fn open_session(&self, user: User) -> DomainResult<IssuedToken> {
        let now = self.ports.clock.now();
        let session = Session { id: SessionId::generate(), user_id: user.id, created_at: now };
        let issued_at = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
        let grant = AccessGrant {
            principal: Principal { user_id: user.id, session_id: session.id },
            issued_at,
            expires_at: i64::try_from(self.settings.token_lifetime.as_secs())
                .ok()
                .and_then(TimeDelta::try_seconds)
                .and_then(|lifetime| issued_at.checked_add_signed(lifetime))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        };
        let access_token = self.ports.tokens.encode(&grant)?;
        self.ports.sessions.create(&session, self.settings.session_ttl).await?;
        Ok(IssuedToken { access_token, expires_in: self.settings.session_ttl, session_id: session.id, user })
    }

    fn login_keys(&self, email: &Email, client: Option<IpAddr>) -> Vec<(String, RateLimit)> {
        let mut keys =
            vec![(format!("login:email:{}", email.as_str()), self.settings.failed_logins_per_email)];
        if let Some(address) = client {
            keys.push((format!("login:addr:{address}"), self.settings.failed_logins_per_address));
        }
        keys
    }

    /// Takes a point of each budget, in order. If one refuses, the points already taken are
    /// given back and the attempt is refused with that budget's wait.
    async fn reserve(&self, keys: &[(String, RateLimit)]) -> DomainResult<()> {
        for (at, (key, limit)) in keys.iter().enumerate() {
            let decision = match self.ports.limiter.acquire(key, *limit).await {
                Ok(decision) => decision,
                Err(error) => {
                    self.give_back(&keys[..at]).await;
                    return Err(error);
                }
            };
            if let RateDecision::Limited { retry_after } = decision {
                self.give_back(&keys[..at]).await;
                return Err(DomainError::TooManyAttempts { retry_after });
            }
        }
        Ok(())
    }

    /// Gives back points reserved for an attempt that does not count. A failure costs the
    /// client one point of its budget at worst, so it is logged rather than failing the request.
    async fn give_back(&self, keys: &[(String, RateLimit)]) {
        for (key, _) in keys {
            if let Err(error) = self.ports.limiter.release(key).await {
                tracing::warn!(%error, "could not give back a reserved login attempt");
            }
        }
    }

    /// The user whose email and password these are, or `None`. An unknown email is checked
    /// against a decoy hash, so it costs what a wrong password costs.
    async fn check_password(&self, email: &Email, password: &Password) -> DomainResult<Option<User>> {
        let credentials = self.ports.users.find_credentials(email).await?;
        let hash = match &credentials {
            Some(found) => found.password_hash.clone(),
            None => self.decoy_hash().await?.clone(),
        };
        let password_matches = self.ports.hasher.verify(password, &hash).await?;
        Ok(credentials.filter(|_| password_matches).map(|found| found.user))
    }

    async fn decoy_hash(&self) -> DomainResult<&PasswordHash> {
        self.decoy_hash
            .get_or_try_init(|| async {
                let decoy = Password::attempt(&uuid::Uuid::new_v4().to_string())?;
                self.ports.hasher.hash(&decoy).await
            })
            .await
    }

    /// Live connections of these sessions must close; the sessions are already gone, so a
    /// failure to announce is logged rather than failing the logout (the other instances then
    /// trust the session from memory for [`crate::session_cache`]'s short freshness at most).
    async fn announce_revoked(&self, user_id: UserId, sessions: Vec<SessionId>) {
        self.sessions.forget(sessions.iter().map(|&session_id| Principal { user_id, session_id }));
        if let Err(error) = self.ports.events.publish(Event::SessionsRevoked { user_id, sessions }).await {
            tracing::warn!(%error, "could not announce ended sessions");
        }
    }
}

#[async_trait]
impl AuthService for AuthUseCases {
    async fn register(
        &self,
        email: Email,
        username: Username,
        password: Password,
        client: Option<IpAddr>,
    ) -> DomainResult<IssuedToken> {
        if let Some(address) = client {
            let key = format!("register:addr:{address}");
            let limit = self.settings.registrations_per_address;
            if let RateDecision::Limited { retry_after } = self.ports.limiter.acquire(&key, limit).await? {
                return Err(DomainError::TooManyAttempts { retry_after });
            }
        }
        let password_hash = self.ports.hasher.hash(&password).await?;
        let user = User { id: UserId::generate(), email, username, created_at: self.ports.clock.now() };
        self.ports.users.create(&user, &password_hash).await?;
        self.open_session(user).await
    }

    async fn login(
        &self,
        email: Email,
        password: Password,
        client: Option<IpAddr>,
    ) -> DomainResult<IssuedToken> {
        // Every attempt reserves its point on each budget before its password is checked, so
        // attempts running at once cannot all pass a check of the budget made before any of
        // them failed. Only a success gives the points back.
        let keys = self.login_keys(&email, client);
        self.reserve(&keys).await?;

        let checked = self.check_password(&email, &password).await;
        match checked {
            Ok(Some(user)) => {
                self.give_back(&keys).await;
                self.open_session(user).await
            }
            Ok(None) => Err(DomainError::InvalidCredentials),
            Err(error) => {
                // Nothing was judged: the attempt does not count.
                self.give_back(&keys).await;
                Err(error)
            }
        }
    }

    async fn authenticate(&self, token: &str) -> DomainResult<AccessGrant> {
        let grant = self.ports.tokens.decode(token)?;
        self.check_session(&grant.principal).await?;
        Ok(grant)
    }

    async fn check_session(&self, principal: &Principal) -> DomainResult<()> {
        let Lookup::Ask(checkpoint) = self.sessions.lookup(principal).await else { return Ok(()) };
        match self.ports.sessions.touch(principal.session_id, self.settings.session_ttl).await? {
            Some(session) if session.user_id == principal.user_id => {
                if let Some(checkpoint) = checkpoint {
                    self.sessions.remember(*principal, checkpoint);
                }
                Ok(())
            }
            _ => Err(DomainError::Unauthenticated),
        }
    }

    async fn issue_connect_ticket(&self, grant: &AccessGrant) -> DomainResult<ConnectTicket> {
        // 244 random bits, URL-safe.
        let ticket = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        self.ports.tickets.issue(&ticket, *grant, CONNECT_TICKET_TTL).await?;
        Ok(ConnectTicket { ticket, expires_in: CONNECT_TICKET_TTL })
    }

    async fn redeem_connect_ticket(&self, ticket: &str) -> DomainResult<AccessGrant> {
        let grant = self.ports.tickets.redeem(ticket).await?.ok_or(DomainError::Unauthenticated)?;
        if grant.expires_at <= self.ports.clock.now() {
            return Err(DomainError::Unauthenticated);
        }
        self.check_session(&grant.principal).await?;
        Ok(grant)
    }

    fn follow_session(&self, grant: &AccessGrant) -> SessionFollow {
        self.watch.follow(grant, self.ports.clock.now())
    }

    async fn me(&self, principal: &Principal) -> DomainResult<User> {
        self.ports.users.find_by_id(principal.user_id).await?.ok_or(DomainError::Unauthenticated)
    }

    async fn logout(&self, principal: &Principal) -> DomainResult<()> {
        self.ports.sessions.revoke(principal.user_id, principal.session_id).await?;
        self.announce_revoked(principal.user_id, vec![principal.session_id]).await;
        Ok(())
    }

    async fn logout_all(&self, principal: &Principal) -> DomainResult<()> {
        let mut ended = self.ports.sessions.revoke_all(principal.user_id).await?;
        if !ended.contains(&principal.session_id) {
            ended.push(principal.session_id);
        }
        self.announce_revoked(principal.user_id, ended).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::{TimeZone, Utc};
    use mockall::predicate::eq;

    use super::*;
    use crate::clock::MockClock;
    use crate::event::MockEventBus;
    use crate::rate_limit::MockRateLimiter;
    use crate::session::{MockSessionStore, MockTicketStore, MockTokenCodec};
    use crate::user::{Credentials, MockPasswordHasher, MockUserRepository};

    /// Mocks with nothing expected: any call a test did not ask for fails it.
    struct Mocks {
        users: MockUserRepository,
        hasher: MockPasswordHasher,
        sessions: MockSessionStore,
        tickets: MockTicketStore,
        tokens: MockTokenCodec,
        limiter: MockRateLimiter,
        events: MockEventBus,
        /// Whether the bus hears every instance, so that sessions may be trusted from memory.
        hears_announcements: bool,
    }

    impl Mocks {
        fn new() -> Self {
            Self {
                users: MockUserRepository::new(),
                hasher: MockPasswordHasher::new(),
                sessions: MockSessionStore::new(),
                tickets: MockTicketStore::new(),
                tokens: MockTokenCodec::new(),
                limiter: MockRateLimiter::new(),
                events: MockEventBus::new(),
                hears_announcements: false,
            }
        }

        fn service(mut self) -> AuthUseCases {
            let mark = self.hears_announcements.then_some(0);
            self.events.expect_continuity().returning(move || mark);
            let (announcements, _) = tokio::sync::broadcast::channel(4);
            self.events
                .expect_subscribe()
                .with(eq(crate::event::Topic::Sessions))
                .returning(move |_| Ok(crate::event::Subscription::new(announcements.subscribe())));
            let mut clock = MockClock::new();
            clock.expect_now().returning(|| Utc.timestamp_opt(1_800_000_000, 0).unwrap());
            AuthUseCases::new(
                AuthPorts {
                    users: Arc::new(self.users),
                    hasher: Arc::new(self.hasher),
                    sessions: Arc::new(self.sessions),
                    tickets: Arc::new(self.tickets),
                    tokens: Arc::new(self.tokens),
                    limiter: Arc::new(self.limiter),
                    events: Arc::new(self.events),
                    clock: Arc::new(clock),
                },
                AuthSettings::default(),
            )
        }
    }

    fn user() -> User {
        User {
            id: UserId::generate(),
            email: Email::parse("ada@example.com").unwrap(),
            username: Username::parse("ada").unwrap(),
            created_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
        }
    }

    fn credentials_of(
        found: &User,
    ) -> impl FnMut(&Email) -> DomainResult<Option<Credentials>> + Send + 'static {
        let found = found.clone();
        move |_| Ok(Some(Credentials { user: found.clone(), password_hash: PasswordHash::new("phc".into()) }))
    }

    #[tokio::test]
    async fn a_registration_past_the_address_budget_is_refused_before_hashing() {
        let mut mocks = Mocks::new();
        budget_answers(
            &mut mocks,
            "register:addr:10.0.0.9",
            RateDecision::Limited { retry_after: Duration::from_secs(60) },
        );
        mocks.hasher.expect_hash().never();
        mocks.users.expect_create().never();

        let error = mocks
            .service()
            .register(
                Email::parse("ada@example.com").unwrap(),
                Username::parse("ada").unwrap(),
                Password::parse("Passw0rd!").unwrap(),
                Some([10, 0, 0, 9].into()),
            )
            .await
            .unwrap_err();
        assert!(matches!(error, DomainError::TooManyAttempts { .. }), "{error:?}");
        assert_eq!(error.retry_after(), Some(Duration::from_secs(60)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_wrong_guesses_each_spend_an_attempt_and_only_the_budget_reaches_the_hasher() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let budget = AuthSettings::default().failed_logins_per_email;
        let mut mocks = Mocks::new();
        // The store's count of the email's window, as a shared limiter would keep it.
        let taken = Arc::new(AtomicU32::new(0));
        let count = Arc::clone(&taken);
        mocks.limiter.expect_acquire().with(eq("login:email:ada@example.com"), eq(budget)).returning(
            move |_, limit| {
                let before = count.fetch_add(1, Ordering::SeqCst);
                Ok(if before < limit.points {
                    RateDecision::Allowed { remaining: limit.points - before - 1 }
                } else {
                    RateDecision::Limited { retry_after: Duration::from_secs(900) }
                })
            },
        );
        mocks.limiter.expect_peek().never();
        mocks.limiter.expect_release().never();
        mocks.users.expect_find_credentials().returning(credentials_of(&user()));
        mocks.hasher.expect_verify().times(budget.points as usize).returning(|_, _| Ok(false));
        let service = Arc::new(mocks.service());

        let guesses: Vec<_> = (0..20)
            .map(|n| {
                let service = Arc::clone(&service);
                tokio::spawn(async move {
                    let guess = Password::attempt(&format!("guess-{n}")).unwrap();
                    service.login(Email::parse("ada@example.com").unwrap(), guess, None).await
                })
            })
            .collect();
        let (mut wrong, mut throttled) = (0, 0);
        for guess in guesses {
            match guess.await.unwrap() {
                Err(DomainError::InvalidCredentials) => wrong += 1,
                Err(DomainError::TooManyAttempts { .. }) => throttled += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(taken.load(Ordering::SeqCst), 20, "every guess reserved an attempt");
        assert_eq!((wrong, throttled), (5, 15));
    }

    /// The limiter answers one acquire of `key`, whatever the budget, with `decision`.
    fn budget_answers(mocks: &mut Mocks, key: &'static str, decision: RateDecision) {
        mocks
            .limiter
            .expect_acquire()
            .with(eq(key), mockall::predicate::always())
            .times(1)
            .returning(move |_, _| Ok(decision));
    }

    #[tokio::test]
    async fn a_refusal_by_the_address_budget_gives_back_the_email_point() {
        let mut mocks = Mocks::new();
        budget_answers(&mut mocks, "login:email:ada@example.com", RateDecision::Allowed { remaining: 4 });
        budget_answers(
            &mut mocks,
            "login:addr:10.0.0.1",
            RateDecision::Limited { retry_after: Duration::from_secs(7) },
        );
        mocks.limiter.expect_release().with(eq("login:email:ada@example.com")).times(1).returning(|_| Ok(()));
        mocks.users.expect_find_credentials().never();
        mocks.hasher.expect_verify().never();

        let error = mocks
            .service()
            .login(
                Email::parse("ada@example.com").unwrap(),
                Password::attempt("x").unwrap(),
                Some([10, 0, 0, 1].into()),
            )
            .await
            .unwrap_err();
        assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    }

    #[tokio::test]
    async fn an_attempt_the_hasher_could_not_judge_does_not_count() {
        let mut mocks = Mocks::new();
        mocks.limiter.expect_acquire().times(1).returning(|_, _| Ok(RateDecision::Allowed { remaining: 4 }));
        mocks.limiter.expect_release().with(eq("login:email:ada@example.com")).times(1).returning(|_| Ok(()));
        mocks.users.expect_find_credentials().returning(credentials_of(&user()));
        mocks.hasher.expect_verify().times(1).returning(|_, _| {
            Err(DomainError::Overloaded { what: "password hashing", retry_after: Duration::from_secs(1) })
        });

        let error = mocks
            .service()
            .login(Email::parse("ada@example.com").unwrap(), Password::attempt("x").unwrap(), None)
            .await
            .unwrap_err();
        assert!(matches!(error, DomainError::Overloaded { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn register_stores_a_hash_and_opens_a_session_named_by_the_token() {
        let mut mocks = Mocks::new();
        mocks
            .limiter
            .expect_acquire()
            .with(eq("register:addr:10.0.0.1"), eq(AuthSettings::default().registrations_per_address))
            .times(1)
            .returning(|_, _| Ok(RateDecision::Allowed { remaining: 19 }));
        mocks.limiter.expect_release().never();
        mocks.hasher.expect_hash().times(1).returning(|_| Ok(PasswordHash::new("phc".into())));
        mocks
            .users
            .expect_create()
            .withf(|user, hash| user.username.as_str() == "ada" && hash.as_str() == "phc")
            .times(1)
            .returning(|_, _| Ok(()));
        let seen_grant = Arc::new(Mutex::new(None));
        let seen = seen_grant.clone();
        mocks.tokens.expect_encode().times(1).returning(move |grant| {
            *seen.lock().unwrap() = Some(*grant);
            Ok("token".into())
        });
        mocks
            .sessions
            .expect_create()
            .withf(|_, ttl| *ttl == Duration::from_secs(3600))
            .times(1)
            .returning(|_, _| Ok(()));

        let issued = mocks
            .service()
            .register(
                Email::parse("ada@example.com").unwrap(),
                Username::parse("ada").unwrap(),
                Password::parse("Passw0rd!").unwrap(),
                Some([10, 0, 0, 1].into()),
            )
            .await
            .unwrap();
        let grant = seen_grant.lock().unwrap().unwrap();
        assert_eq!(issued.access_token, "token");
        assert_eq!(grant.principal, Principal { user_id: issued.user.id, session_id: issued.session_id });
        assert_eq!(grant.issued_at.timestamp(), 1_800_000_000);
        assert_eq!(grant.expires_at.timestamp(), 1_800_000_000 + 7 * 24 * 3600);
        assert_eq!(issued.expires_in, Duration::from_secs(3600));
    }

    #[tokio::test]
    async fn an_unknown_email_costs_a_hash_check_and_counts_as_a_failure() {
        let mut mocks = Mocks::new();
        mocks.limiter.expect_release().never();
        mocks.users.expect_find_credentials().returning(|_| Ok(None));
        mocks.hasher.expect_hash().times(1).returning(|_| Ok(PasswordHash::new("decoy".into())));
        mocks
            .hasher
            .expect_verify()
            .withf(|_, hash| hash.as_str() == "decoy")
            .times(1)
            .returning(|_, _| Ok(true));
        budget_answers(&mut mocks, "login:email:nobody@example.com", RateDecision::Allowed { remaining: 4 });
        budget_answers(&mut mocks, "login:addr:10.0.0.1", RateDecision::Allowed { remaining: 49 });

        let error = mocks
            .service()
            .login(
                Email::parse("nobody@example.com").unwrap(),
                Password::attempt("Passw0rd").unwrap(),
                Some([10, 0, 0, 1].into()),
            )
            .await
            .unwrap_err();
        assert!(matches!(error, DomainError::InvalidCredentials), "{error:?}");
    }

    #[tokio::test]
    async fn a_right_password_logs_in_without_counting() {
        let mut mocks = Mocks::new();
        budget_answers(&mut mocks, "login:email:ada@example.com", RateDecision::Allowed { remaining: 4 });
        mocks.limiter.expect_release().with(eq("login:email:ada@example.com")).times(1).returning(|_| Ok(()));
        mocks.users.expect_find_credentials().returning(credentials_of(&user()));
        mocks.hasher.expect_verify().times(1).returning(|_, _| Ok(true));
        mocks.tokens.expect_encode().returning(|_| Ok("token".into()));
        mocks.sessions.expect_create().times(1).returning(|_, _| Ok(()));

        let issued = mocks
            .service()
            .login(Email::parse("ada@example.com").unwrap(), Password::attempt("Passw0rd").unwrap(), None)
            .await
            .unwrap();
        assert_eq!(issued.user.username.as_str(), "ada");
    }

    #[tokio::test]
    async fn a_throttled_email_is_refused_before_any_password_check() {
        let mut mocks = Mocks::new();
        mocks
            .limiter
            .expect_acquire()
            .times(1)
            .returning(|_, _| Ok(RateDecision::Limited { retry_after: Duration::from_secs(42) }));
        mocks.limiter.expect_release().never();
        mocks.users.expect_find_credentials().never();
        mocks.hasher.expect_verify().never();

        let error = mocks
            .service()
            .login(Email::parse("ada@example.com").unwrap(), Password::attempt("x").unwrap(), None)
            .await
            .unwrap_err();
        assert_eq!(error.retry_after(), Some(Duration::from_secs(42)));
        assert!(matches!(error, DomainError::TooManyAttempts { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn a_token_is_accepted_only_while_its_session_lives_for_its_user() {
        let owner = UserId::generate();
        let sid = SessionId::generate();
        let grant = AccessGrant {
            principal: Principal { user_id: owner, session_id: sid },
            issued_at: DateTime::UNIX_EPOCH,
            expires_at: DateTime::<Utc>::MAX_UTC,
        };
        let cases = [
            (Some(Session { id: sid, user_id: owner, created_at: Utc::now() }), true),
            (None, false),
            (Some(Session { id: sid, user_id: UserId::generate(), created_at: Utc::now() }), false),
        ];
        for (session, accepted) in cases {
            let mut mocks = Mocks::new();
            mocks.tokens.expect_decode().with(eq("tok")).returning(move |_| Ok(grant));
            mocks
                .sessions
                .expect_touch()
                .with(eq(sid), eq(Duration::from_secs(3600)))
                .times(1)
                .returning(move |_, _| Ok(session.clone()));
            let outcome = mocks.service().authenticate("tok").await;
            match outcome {
                Ok(authenticated) => {
                    assert!(accepted);
                    assert_eq!(authenticated, grant, "the token's grant, expiry included");
                }
                Err(error) => {
                    assert!(!accepted);
                    assert!(matches!(error, DomainError::Unauthenticated));
                }
            }
        }
    }

    #[tokio::test]
    async fn a_bad_token_never_reaches_the_session_store() {
        let mut mocks = Mocks::new();
        mocks.tokens.expect_decode().returning(|_| Err(DomainError::Unauthenticated));
        mocks.sessions.expect_touch().never();
        assert!(matches!(mocks.service().authenticate("forged").await, Err(DomainError::Unauthenticated)));
    }

    #[tokio::test]
    async fn logout_ends_one_session_and_announces_it() {
        let principal = Principal { user_id: UserId::generate(), session_id: SessionId::generate() };
        let mut mocks = Mocks::new();
        mocks
            .sessions
            .expect_revoke()
            .with(eq(principal.user_id), eq(principal.session_id))
            .times(1)
            .returning(|_, _| Ok(true));
        mocks
            .events
            .expect_publish()
            .with(eq(Event::SessionsRevoked {
                user_id: principal.user_id,
                sessions: vec![principal.session_id],
            }))
            .times(1)
            .returning(|_| Ok(()));
        mocks.service().logout(&principal).await.unwrap();
    }

    #[tokio::test]
    async fn logout_all_announces_every_ended_session() {
        let principal = Principal { user_id: UserId::generate(), session_id: SessionId::generate() };
        let other = SessionId::generate();
        let mut mocks = Mocks::new();
        let ended = vec![other, principal.session_id];
        mocks
            .sessions
            .expect_revoke_all()
            .with(eq(principal.user_id))
            .times(1)
            .returning(move |_| Ok(ended.clone()));
        mocks
            .events
            .expect_publish()
            .withf(move |event| {
                matches!(event, Event::SessionsRevoked { sessions, .. } if sessions.len() == 2 && sessions.contains(&other))
            })
            .times(1)
            .returning(|_| Ok(()));
        mocks.service().logout_all(&principal).await.unwrap();
    }

    #[tokio::test]
    async fn a_ticket_is_redeemed_once_and_only_while_its_session_lives() {
        let principal = Principal { user_id: UserId::generate(), session_id: SessionId::generate() };
        let grant = AccessGrant {
            principal,
            issued_at: Utc.timestamp_opt(1_799_990_000, 0).unwrap(),
            expires_at: Utc.timestamp_opt(1_800_000_001, 0).unwrap(),
        };
        let mut mocks = Mocks::new();
        let issued = Arc::new(Mutex::new(String::new()));
        let seen = issued.clone();
        mocks
            .tickets
            .expect_issue()
            .withf(move |ticket, p, ttl| {
                *seen.lock().unwrap() = ticket.to_owned();
                *p == grant && *ttl == CONNECT_TICKET_TTL && ticket.len() == 64
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        let mut redeemed = false;
        mocks
            .tickets
            .expect_redeem()
            .times(2)
            .returning(move |_| Ok((!std::mem::replace(&mut redeemed, true)).then_some(grant)));
        let user = principal.user_id;
        mocks
            .sessions
            .expect_touch()
            .times(1)
            .returning(move |id, _| Ok(Some(Session { id, user_id: user, created_at: Utc::now() })));
        let service = mocks.service();

        let ticket = service.issue_connect_ticket(&grant).await.unwrap();
        assert_eq!(ticket.ticket, *issued.lock().unwrap());
        assert_eq!(service.redeem_connect_ticket(&ticket.ticket).await.unwrap(), grant);
        assert!(matches!(
            service.redeem_connect_ticket(&ticket.ticket).await,
            Err(DomainError::Unauthenticated)
        ));
    }

    #[tokio::test]
    async fn a_ticket_whose_token_has_expired_opens_nothing() {
        let grant = AccessGrant {
            principal: Principal { user_id: UserId::generate(), session_id: SessionId::generate() },
            issued_at: Utc.timestamp_opt(1_799_000_000, 0).unwrap(),
            // The mocked clock reads 1_800_000_000.
            expires_at: Utc.timestamp_opt(1_800_000_000, 0).unwrap(),
        };
        let mut mocks = Mocks::new();
        mocks.tickets.expect_redeem().times(1).returning(move |_| Ok(Some(grant)));
        mocks.sessions.expect_touch().never();
        assert!(matches!(
            mocks.service().redeem_connect_ticket("ticket").await,
            Err(DomainError::Unauthenticated)
        ));
    }

    fn alive_session(mocks: &mut Mocks, principal: Principal, touches: usize) {
        mocks.tokens.expect_decode().with(eq("tok")).returning(move |_| {
            Ok(AccessGrant {
                principal,
                issued_at: DateTime::UNIX_EPOCH,
                expires_at: DateTime::<Utc>::MAX_UTC,
            })
        });
        let user_id = principal.user_id;
        mocks
            .sessions
            .expect_touch()
            .with(eq(principal.session_id), eq(Duration::from_secs(3600)))
            .times(touches)
            .returning(move |id, _| Ok(Some(Session { id, user_id, created_at: Utc::now() })));
    }

    #[tokio::test(start_paused = true)]
    async fn while_announcements_are_heard_a_busy_session_is_checked_once_per_freshness() {
        let principal = Principal { user_id: UserId::generate(), session_id: SessionId::generate() };
        let mut mocks = Mocks::new();
        mocks.hears_announcements = true;
        // The first request starts following announcements, the second is remembered, then
        // the session is trusted until it is no longer fresh.
        alive_session(&mut mocks, principal, 3);
        let service = mocks.service();
        for _ in 0..10 {
            assert_eq!(service.authenticate("tok").await.unwrap().principal, principal);
        }
        tokio::time::advance(crate::session_cache::FRESH_FOR).await;
        assert_eq!(service.authenticate("tok").await.unwrap().principal, principal);
    }

    #[tokio::test(start_paused = true)]
    async fn without_announcements_every_request_asks_the_store() {
        let principal = Principal { user_id: UserId::generate(), session_id: SessionId::generate() };
        let mut mocks = Mocks::new();
        alive_session(&mut mocks, principal, 5);
        let service = mocks.service();
        for _ in 0..5 {
            service.authenticate("tok").await.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_logged_out_here_is_refused_at_once_though_it_was_trusted() {
        let principal = Principal { user_id: UserId::generate(), session_id: SessionId::generate() };
        let mut mocks = Mocks::new();
        mocks.hears_announcements = true;
        mocks.tokens.expect_decode().returning(move |_| {
            Ok(AccessGrant {
                principal,
                issued_at: DateTime::UNIX_EPOCH,
                expires_at: DateTime::<Utc>::MAX_UTC,
            })
        });
        let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let gone = ended.clone();
        let user_id = principal.user_id;
        mocks.sessions.expect_touch().returning(move |id, _| {
            Ok((!gone.load(std::sync::atomic::Ordering::SeqCst)).then(|| Session {
                id,
                user_id,
                created_at: Utc::now(),
            }))
        });
        mocks.sessions.expect_revoke().returning(move |_, _| {
            ended.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(true)
        });
        mocks.events.expect_publish().returning(|_| Ok(()));
        let service = mocks.service();
        service.authenticate("tok").await.unwrap();
        service.authenticate("tok").await.unwrap();
        service.logout(&principal).await.unwrap();
        assert!(matches!(service.authenticate("tok").await, Err(DomainError::Unauthenticated)));
    }
}
