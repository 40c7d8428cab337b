//! The configuration, read once from the environment (and an optional `.env` file), each
//! variable parsed into its type with an error that names it.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use convo_api::TrustedProxies;
use convo_domain::redact_url;
use secrecy::{ExposeSecret, SecretString};

/// Where the server runs: development is forgiving, production refuses weak settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

/// Every setting of the server.
#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    pub redis_url: Option<String>,
    /// Starts every Redis key and channel (`REDIS_KEY_PREFIX`), so deployments can share a Redis.
    pub redis_key_prefix: String,
    pub jwt_secret: SecretString,
    /// True when `JWT_SECRET` was unset and a random one was made for this run.
    pub jwt_secret_generated: bool,
    pub session_secret: Option<SecretString>,
    pub session_ttl: Duration,
    pub rate_limit_points: u32,
    pub rate_limit_duration: Duration,
    /// Registration attempts per client address per 15 minutes.
    pub registrations_per_address: u32,
    pub host: IpAddr,
    pub port: u16,
    pub environment: Environment,
    pub cors_origins: Vec<String>,
    pub ws_outbound_queue: usize,
    /// Proxies whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`); none by default.
    pub trusted_proxies: TrustedProxies,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact_url(&self.database_url))
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_key_prefix", &self.redis_key_prefix)
            .field("session_ttl", &self.session_ttl)
            .field("rate_limit_points", &self.rate_limit_points)
            .field("rate_limit_duration", &self.rate_limit_duration)
            .field("registrations_per_address", &self.registrations_per_address)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("environment", &self.environment)
            .field("cors_origins", &self.cors_origins)
            .field("ws_outbound_queue", &self.ws_outbound_queue)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish_non_exhaustive()
    }
}

/// A variable that could not be used, with what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl ConfigError {
    fn new(variable: &'static str, problem: impl Into<String>) -> Self {
        Self { variable, problem: problem.into() }
    }
}

pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/convo.db?mode=rwc";
pub const DEFAULT_REDIS_KEY_PREFIX: &str = "convo:";
const MIN_PRODUCTION_SECRET_BYTES: usize = 32;

impl Config {
    /// Reads `.env` if there is one (without overriding the environment), then the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(error) if error.not_found() => {}
            Err(error) => return Err(ConfigError::new(".env", error.to_string())),
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the configuration from any source of variables (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var =
            |name: &str| lookup(name).map(|value| value.trim().to_owned()).filter(|value| !value.is_empty());

        let environment = match var("CONVO_ENV").as_deref() {
            None | Some("development") => Environment::Development,
            Some("production") => Environment::Production,
            Some(other) => {
                return Err(ConfigError::new(
                    "CONVO_ENV",
                    format!("expected `development` or `production`, got `{other}`"),
                ));
            }
        };

        let database_url = var("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        if !["postgres://", "postgresql://", "sqlite:"].iter().any(|scheme| database_url.starts_with(scheme))
        {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "expected a postgres://... or sqlite://... URL".to_owned(),
            ));
        }

        let redis_url = var("REDIS_URL");
        if let Some(url) = &redis_url {
            check_redis_url(url)?;
        }

        let redis_key_prefix = var("REDIS_KEY_PREFIX").unwrap_or_else(|| DEFAULT_REDIS_KEY_PREFIX.to_owned());
        if redis_key_prefix.len() > 64
            || redis_key_prefix.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ConfigError::new(
                "REDIS_KEY_PREFIX",
                "must be at most 64 characters without spaces or control characters",
            ));
        }

        let (jwt_secret, jwt_secret_generated) = match var("JWT_SECRET") {
            Some(secret)
                if environment == Environment::Production && secret.len() < MIN_PRODUCTION_SECRET_BYTES =>
            {
                return Err(ConfigError::new(
                    "JWT_SECRET",
                    format!("must be at least {MIN_PRODUCTION_SECRET_BYTES} bytes when CONVO_ENV=production"),
                ));
            }
            Some(secret) => (SecretString::from(secret), false),
            None if environment == Environment::Production => {
                return Err(ConfigError::new("JWT_SECRET", "is required when CONVO_ENV=production"));
            }
            None => (SecretString::from(random_secret()), true),
        };

        let cors_origins: Vec<String> = var("CORS_ORIGINS")
            .map(|list| list.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        for origin in &cors_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) || origin.ends_with('/') {
                return Err(ConfigError::new(
                    "CORS_ORIGINS",
                    format!("`{origin}` is not an origin like https://chat.example.com"),
                ));
            }
        }

        let trusted_proxies = match var("TRUSTED_PROXIES") {
            None => TrustedProxies::default(),
            Some(list) => list.parse().map_err(|error| {
                ConfigError::new("TRUSTED_PROXIES", format!("{error}; expected comma-separated networks"))
            })?,
        };

        Ok(Self {
            database_url,
            redis_url,
            redis_key_prefix,
            jwt_secret,
            jwt_secret_generated,
            session_secret: var("SESSION_SECRET").map(SecretString::from),
            session_ttl: Duration::from_secs(number(&var, "SESSION_TTL", 3600, 1..=31_536_000)?),
            rate_limit_points: number(&var, "RATE_LIMIT_POINTS", 5, 1..=1_000_000)?,
            rate_limit_duration: Duration::from_secs(number(&var, "RATE_LIMIT_DURATION", 10, 1..=86_400)?),
            registrations_per_address: number(&var, "REGISTRATIONS_PER_ADDRESS", 20, 1..=1_000_000)?,
            host: match var("HOST") {
                None => IpAddr::from([127, 0, 0, 1]),
                Some(host) if host == "localhost" => IpAddr::from([127, 0, 0, 1]),
                Some(host) => host
                    .parse()
                    .map_err(|_| ConfigError::new("HOST", format!("`{host}` is not an IP address")))?,
            },
            port: number(&var, "PORT", 3000, 0..=65_535)?,
            environment,
            cors_origins,
            ws_outbound_queue: number(&var, "WS_OUTBOUND_QUEUE", 4096, 1..=1_000_000)?,
            trusted_proxies,
        })
    }

    pub fn jwt_secret_bytes(&self) -> &[u8] {
        self.jwt_secret.expose_secret().as_bytes()
    }
}

/// The Redis URL schemes this build can connect with: one node, or a cluster.
const REDIS_SCHEMES: [&str; 2] = ["redis://", "redis-cluster://"];

/// Refuses a `REDIS_URL` this build cannot use: only the documented schemes, with a host. TLS
/// (`rediss://`, `rediss-cluster://`) is not compiled in, so it is refused here rather than
/// failing at the first connection.
fn check_redis_url(url: &str) -> Result<(), ConfigError> {
    let scheme_end = url.find("://").map(|end| end + 3);
    let scheme = scheme_end.map(|end| url[..end].to_ascii_lowercase());
    let Some(scheme) = scheme.filter(|scheme| REDIS_SCHEMES.contains(&scheme.as_str())) else {
        let hint = match url.split_once("://") {
            Some((scheme, _))
                if scheme.eq_ignore_ascii_case("rediss") || scheme.eq_ignore_ascii_case("rediss-cluster") =>
            {
                "; TLS is not compiled into this build"
            }
            _ => "",
        };
        return Err(ConfigError::new(
            "REDIS_URL",
            format!("expected a redis://host:port or redis-cluster://host:port URL{hint}"),
        ));
    };
    let rest = &url[scheme.len()..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if host.is_empty() || host.starts_with(':') {
        return Err(ConfigError::new("REDIS_URL", "names no host; expected redis://host:port"));
    }
    Ok(())
}

/// A whole number within `range`, or `default` when the variable is unset.
fn number<T>(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(raw) = var(name) else { return Ok(default) };
    let value: T =
        raw.parse().map_err(|_| ConfigError::new(name, format!("`{raw}` is not a whole number")))?;
    if !range.contains(&value) {
        return Err(ConfigError::new(
            name,
            format!("{value} is out of range ({}..={})", range.start(), range.end()),
        ));
    }
    Ok(value)
}

/// 32 random bytes, hex-encoded, for a development run without `JWT_SECRET`.
fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let config = config(&[]).expect("defaults are valid");
        assert_eq!(config.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(config.redis_url, None);
        assert_eq!(config.redis_key_prefix, "convo:");
        assert!(config.jwt_secret_generated);
        assert_eq!(config.jwt_secret_bytes().len(), 64);
        assert_eq!(config.session_ttl, Duration::from_secs(3600));
        assert_eq!(config.rate_limit_points, 5);
        assert_eq!(config.rate_limit_duration, Duration::from_secs(10));
        assert_eq!(config.registrations_per_address, 20);
        assert_eq!(config.port, 3000);
        assert_eq!(config.host, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(config.environment, Environment::Development);
        assert!(config.cors_origins.is_empty());
        assert_eq!(config.ws_outbound_queue, 4096);
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("DATABASE_URL", "mysql://x")], "DATABASE_URL"),
            (&[("REDIS_URL", "localhost:6379")], "REDIS_URL"),
            (&[("REDIS_URL", "rediss://cache:6380")], "REDIS_URL"),
            (&[("REDIS_URL", "http://cache:6379")], "REDIS_URL"),
            (&[("REDIS_URL", "redis-sentinel://cache:26379")], "REDIS_URL"),
            (&[("REDIS_URL", "redis+unix:///tmp/redis.sock")], "REDIS_URL"),
            (&[("REDIS_URL", "redis://")], "REDIS_URL"),
            (&[("REDIS_URL", "redis://:pw@:6379")], "REDIS_URL"),
            (&[("TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal")], "TRUSTED_PROXIES"),
            (&[("TRUSTED_PROXIES", "10.0.0.0/40")], "TRUSTED_PROXIES"),
            (&[("REDIS_KEY_PREFIX", "a b:")], "REDIS_KEY_PREFIX"),
            (&[("RATE_LIMIT_POINTS", "five")], "RATE_LIMIT_POINTS"),
            (&[("RATE_LIMIT_POINTS", "0")], "RATE_LIMIT_POINTS"),
            (&[("RATE_LIMIT_DURATION", "-1")], "RATE_LIMIT_DURATION"),
            (&[("REGISTRATIONS_PER_ADDRESS", "0")], "REGISTRATIONS_PER_ADDRESS"),
            (&[("SESSION_TTL", "1h")], "SESSION_TTL"),
            (&[("PORT", "70000")], "PORT"),
            (&[("HOST", "example.com")], "HOST"),
            (&[("CONVO_ENV", "staging")], "CONVO_ENV"),
            (&[("CORS_ORIGINS", "chat.example.com")], "CORS_ORIGINS"),
            (&[("WS_OUTBOUND_QUEUE", "0")], "WS_OUTBOUND_QUEUE"),
            (&[("CONVO_ENV", "production"), ("JWT_SECRET", "short")], "JWT_SECRET"),
            (&[("CONVO_ENV", "production")], "JWT_SECRET"),
        ];
        for (vars, variable) in cases {
            let error = config(vars).expect_err(variable);
            assert_eq!(error.variable, *variable, "{error}");
            assert!(error.to_string().starts_with(variable), "{error}");
        }
    }

    #[test]
    fn the_documented_redis_urls_are_accepted() {
        for url in [
            "redis://127.0.0.1:6379",
            "redis://cache",
            "redis://user:s3cret@cache:6379/2",
            "redis://:s3cret@cache:6379",
            "REDIS://cache:6379",
            "redis-cluster://n1:7000?node=n2:7001",
            "redis-cluster://:s3cret@n1:7000",
        ] {
            let config = config(&[("REDIS_URL", url)]).unwrap_or_else(|error| panic!("{url}: {error}"));
            assert_eq!(config.redis_url.as_deref(), Some(url));
        }
    }

    #[test]
    fn a_refused_redis_url_says_why_in_one_line_without_its_password() {
        let error = config(&[("REDIS_URL", "rediss://:s3cret@cache:6380")]).expect_err("TLS is not built in");
        let line = error.to_string();
        assert!(line.contains("TLS"), "{line}");
        assert!(!line.contains("s3cret") && !line.contains('\n'), "{line}");
    }

    #[test]
    fn trusted_proxies_default_to_none_and_parse_as_networks() {
        assert!(config(&[]).expect("valid").trusted_proxies.is_empty());
        let listed = config(&[("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1, fd00::/8")]).expect("valid");
        assert!(!listed.trusted_proxies.is_empty());
        let error = config(&[("TRUSTED_PROXIES", "10.0.0.0/8,nope")]).expect_err("refused");
        assert!(error.to_string().starts_with("TRUSTED_PROXIES: `nope`"), "{error}");
    }

    #[test]
    fn production_accepts_a_long_secret_and_lists_origins() {
        let secret = "s".repeat(32);
        let config = config(&[
            ("CONVO_ENV", "production"),
            ("JWT_SECRET", &secret),
            ("CORS_ORIGINS", "https://a.example, http://localhost:5173"),
        ])
        .expect("valid");
        assert!(!config.jwt_secret_generated);
        assert_eq!(config.cors_origins, ["https://a.example", "http://localhost:5173"]);
    }

    #[test]
    fn passwords_never_reach_the_logs() {
        assert_eq!(redact_url("postgres://convo:s3cret@db:5432/convo"), "postgres://convo:***@db:5432/convo");
        let config = config(&[("DATABASE_URL", "postgres://u:pw@h/d")]).expect("valid");
        assert!(!format!("{config:?}").contains("pw@"));
    }
}
