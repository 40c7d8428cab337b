//! Support for tests that need a Redis of their own: [`TestRedis`] connects to the server of
//! `TEST_REDIS_URL` (default `redis://127.0.0.1:6379`) under a fresh key prefix
//! (`test:<uuid>:`), and deletes every key under it when dropped.

use std::time::Duration;

use crate::connection::{RedisConnection, RedisSettings};

/// Whether a missing Redis fails the tests (under CI) rather than skipping them: the domain's,
/// re-exported for the black-box tests, which reach Redis support through this module.
pub use convo_domain::testing::is_ci;

/// The server Redis tests run against unless `TEST_REDIS_URL` says otherwise.
pub const DEFAULT_TEST_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A connection under a key prefix no other test uses.
#[derive(Debug)]
pub struct TestRedis {
    pub url: String,
    pub prefix: String,
    pub connection: RedisConnection,
}

impl TestRedis {
    /// `None`, with a loud note on stderr, when Redis is unreachable; under CI (`CI=true`) that
    /// panics instead, since a missing service there is a failure, not a reason to skip.
    pub async fn connect() -> Option<TestRedis> {
        let url = test_url();
        let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
        let mut settings = settings(&url, &prefix);
        settings.connect_timeout = Duration::from_secs(3);
        match RedisConnection::connect(settings).await {
            Ok(connection) => Some(TestRedis { url, prefix, connection }),
            Err(error) => {
                if is_ci() {
                    panic!("Redis at {url} is required under CI but unreachable: {error}");
                }
                eprintln!(
                    "\n*** SKIPPED: Redis at {url} is unreachable ({error}); set TEST_REDIS_URL or start \
                     redis-server to run the Redis tests ***\n"
                );
                None
            }
        }
    }
}

/// The settings tests use: short idle expiry, so that nothing outlives a test run for long.
pub fn settings(url: &str, prefix: &str) -> RedisSettings {
    let mut settings = RedisSettings::new(url, prefix);
    settings.cache_idle = Duration::from_secs(120);
    settings
}

pub fn test_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_TEST_REDIS_URL.to_owned())
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        // Drop cannot await and may run on a runtime that must not be blocked: purge from a
        // thread with a runtime of its own, on a connection of its own.
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let connection = RedisConnection::connect(settings(&url, &prefix)).await?;
                connection.purge().await.map_err(|error| error.to_string())?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("warning: could not purge test keys under {}: {error}", self.prefix),
            Err(_) => eprintln!("warning: purging test keys panicked"),
        }
    }
}

/// A connection under a fresh prefix, without the purge on drop: for contract suites whose
/// adapters outlive the factory. Every key those adapters write carries a TTL (at most the
/// test settings' two-minute cache idle time), so nothing stays behind for long.
pub async fn test_connection() -> Option<RedisConnection> {
    let test = TestRedis::connect().await?;
    let connection = test.connection.clone();
    std::mem::forget(test);
    Some(connection)
}
