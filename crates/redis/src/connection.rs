//! The shared connection: a pool for commands, settings for subscriber connections, the key
//! prefix, and the one place where a Redis failure becomes a domain error.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use convo_domain::{DomainError, DomainResult};
use fred::prelude::{
    Builder, ClientLike, Config, ConnectionConfig, KeysInterface, PerformanceConfig, Pool, ReconnectPolicy,
    TcpConfig,
};
use fred::types::config::UnresponsiveConfig;
use fred::types::scripts::Script;

use crate::keys::Keys;

/// How to reach Redis and how patient to be with it.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]`, or `redis-cluster://...` for a cluster.
    pub url: String,
    /// Starts every key and channel (`REDIS_KEY_PREFIX`).
    pub key_prefix: String,
    /// The longest any command may take before it counts as a failure.
    pub command_timeout: Duration,
    /// Connections in the command pool. One by default: Redis runs commands one at a time
    /// anyway, and on one connection the commands of concurrent requests leave in one write.
    pub pool_size: usize,
    /// How long the first connection may take at start-up.
    pub connect_timeout: Duration,
    /// A room's cached messages expire after this long without a write, or a read (give or take
    /// an eighth: reads restart the time only now and then).
    pub cache_idle: Duration,
}

impl RedisSettings {
    pub const DEFAULT_PREFIX: &'static str = "convo:";

    pub fn new(url: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: key_prefix.into(),
            command_timeout: Duration::from_millis(1000),
            pool_size: 1,
            connect_timeout: Duration::from_secs(5),
            cache_idle: Duration::from_secs(30 * 60),
        }
    }
}

/// Why Redis could not be set up at start-up.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("invalid Redis URL: {0}")]
    Url(String),
    #[error("cannot connect to Redis: {0}")]
    Connect(String),
}

/// A pool of connections to one Redis deployment, and the key layout under one prefix. Cheap
/// to clone; every adapter built from it shares the pool.
#[derive(Clone)]
pub struct RedisConnection {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    builder: Builder,
    keys: Keys,
    settings: RedisSettings,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection").field("prefix", &self.inner.keys.prefix()).finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// Connects the pool; fails if Redis does not answer within `connect_timeout`. Later
    /// disconnections are repaired in the background (exponential backoff, 100 ms to 1 s).
    pub async fn connect(settings: RedisSettings) -> Result<Self, RedisError> {
        let config = Config::from_url(&settings.url).map_err(|error| RedisError::Url(error.to_string()))?;
        let mut builder = Builder::from_config(config);
        let command_timeout = settings.command_timeout;
        builder
            .set_performance_config(PerformanceConfig {
                default_command_timeout: command_timeout,
                ..PerformanceConfig::default()
            })
            .set_connection_config(ConnectionConfig {
                connection_timeout: Duration::from_secs(2),
                internal_command_timeout: Duration::from_secs(2),
                max_command_attempts: 2,
                tcp: TcpConfig { nodelay: Some(true), ..TcpConfig::default() },
                unresponsive: UnresponsiveConfig {
                    max_timeout: Some(command_timeout.max(Duration::from_secs(2))),
                    interval: Duration::from_millis(500),
                },
                ..ConnectionConfig::default()
            })
            // Capped at a second: a connection attempt to a Redis that is down costs little,
            // and every second of backoff after it returns is a second more of 503s.
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 1_000, 2));
        let pool = builder
            .build_pool(settings.pool_size.max(1))
            .map_err(|error| RedisError::Url(error.to_string()))?;
        match tokio::time::timeout(settings.connect_timeout, pool.init()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                let _ = pool.quit().await;
                return Err(RedisError::Connect(error.to_string()));
            }
            Err(_) => {
                let _ = pool.quit().await;
                return Err(RedisError::Connect(format!("no answer within {:?}", settings.connect_timeout)));
            }
        }
        let keys = Keys::new(settings.key_prefix.clone());
        Ok(Self { inner: Arc::new(Inner { pool, builder, keys, settings }) })
    }

    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.inner.settings
    }

    pub(crate) fn builder(&self) -> &Builder {
        &self.inner.builder
    }

    /// A connected client of the pool, or `Unavailable` at once while none is connected (so
    /// that callers do not queue up behind a reconnection).
    pub(crate) fn client(&self, what: &'static str) -> DomainResult<&fred::prelude::Client> {
        let client = self.inner.pool.next_connected();
        if client.is_connected() {
            Ok(client)
        } else {
            Err(DomainError::unavailable(what, "Redis is not connected"))
        }
    }

    /// Runs one command (or script) with the command timeout, mapping every failure to
    /// `Unavailable { what }`.
    pub(crate) async fn run<T>(
        &self,
        what: &'static str,
        command: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> DomainResult<T> {
        // fred applies the timeout itself; this one also bounds a reload after NOSCRIPT.
        let limit = self.inner.settings.command_timeout * 2;
        match tokio::time::timeout(limit, command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(DomainError::unavailable(what, error)),
            Err(_) => Err(DomainError::unavailable(what, format!("no answer from Redis within {limit:?}"))),
        }
    }

    /// Runs a Lua script on a connected client (loading it on every node after `NOSCRIPT`).
    pub(crate) async fn script(
        &self,
        what: &'static str,
        script: &Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> DomainResult<fred::prelude::Value> {
        let client = self.client(what)?;
        self.run(what, script.evalsha_with_reload(client, keys, args)).await
    }
}

impl RedisConnection {
    /// Deletes every key under the prefix (SCAN, then DEL key by key, so it works on a cluster
    /// too): for tests, and for retiring a deployment's keys. Returns how many were deleted.
    pub async fn purge(&self) -> DomainResult<usize> {
        use futures_util::StreamExt;
        let client = self.client("cache")?;
        let pattern = format!("{}*", glob_escape(self.keys().prefix()));
        let mut keys = Vec::new();
        {
            let mut scan: std::pin::Pin<Box<dyn futures_util::Stream<Item = _> + Send>> =
                if client.is_clustered() {
                    Box::pin(client.scan_cluster_buffered(pattern, Some(500), None))
                } else {
                    Box::pin(client.scan_buffered(pattern, Some(500), None))
                };
            while let Some(key) = scan.next().await {
                keys.push(key.map_err(|error| DomainError::unavailable("cache", error))?);
            }
        }
        for key in &keys {
            self.run("cache", client.del::<(), _>(key.clone())).await?;
        }
        Ok(keys.len())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let pool = self.pool.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = pool.quit().await;
            });
        }
    }
}

/// `raw` with the glob characters of SCAN MATCH escaped.
fn glob_escape(raw: &str) -> String {
    let mut escaped = String::with_capacity(raw.len());
    for c in raw.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The integer in a script's answer.
pub(crate) fn int(value: &fred::prelude::Value) -> Option<i64> {
    value.as_i64()
}

/// A malformed answer from Redis: a bug or foreign data, never the client's fault.
pub(crate) fn malformed(what: &str) -> DomainError {
    DomainError::internal(format!("unexpected answer from Redis: {what}"))
}
