//! A `convo` server as a child process, for the benchmarks: its CPU time and memory can then be
//! read from /proc apart from the load generator's. [`ServerProcess::start`] runs the `convo`
//! binary that sits next to the running executable (so `target/release/convo` for a release
//! bench) on storage of its own: a fresh SQLite file, or a fresh PostgreSQL database plus the
//! local Redis under a fresh key prefix. Everything is removed again when it is dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use convo_redis::testing::TestRedis;
use convo_sql::testing::TestDatabase;

use crate::TestApp;
use crate::redis::free_port;

/// The storage and shared-state adapters a [`ServerProcess`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// A SQLite file and the in-process adapters: the embedded default.
    Sqlite,
    /// PostgreSQL, and Redis for sessions, rate limits, the message cache, events and presence:
    /// the production setup.
    PostgresRedis,
}

impl Stack {
    pub fn parse(name: &str) -> Option<Stack> {
        match name {
            "sqlite" => Some(Stack::Sqlite),
            "postgres-redis" | "postgres+redis" => Some(Stack::PostgresRedis),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Stack::Sqlite => "sqlite",
            Stack::PostgresRedis => "postgres+redis",
        }
    }
}

/// A running `convo` child process and a client for it ([`ServerProcess::app`]).
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// A client of the server; it owns neither the server nor its database.
    pub app: TestApp,
    /// What the server was started with, for another instance beside it.
    env: Vec<(String, String)>,
    _storage: Storage,
}

/// What the server's data lives in, deleted on drop (after the server is killed).
#[derive(Debug)]
enum Storage {
    Sqlite {
        _dir: TempDir,
    },
    PostgresRedis {
        _database: TestDatabase,
        _redis: TestRedis,
    },
    /// Another instance's: the first one started keeps it.
    Shared,
}

/// A fresh directory under the system's temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `convo-{kind}-{random}`.
    pub fn new(kind: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("convo-{kind}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl ServerProcess {
    /// Starts `convo serve` on `stack` with the bench defaults and `vars` on top, and waits until
    /// it answers `/health`. The server sees only those variables, not this process's
    /// environment (an inherited `REDIS_URL` would change what is measured). `None`, with a note on stderr, when PostgreSQL or Redis is not
    /// reachable here.
    pub async fn start(stack: Stack, vars: &[(&str, &str)]) -> Option<ServerProcess> {
        let port = free_port();
        let mut env: Vec<(String, String)> = vec![
            ("HOST".into(), "127.0.0.1".into()),
            ("PORT".into(), port.to_string()),
            ("JWT_SECRET".into(), "benchmark-secret-benchmark-secret!".into()),
            ("RUST_LOG".into(), "warn".into()),
            // The benchmarks register hundreds of users from one address.
            ("REGISTRATIONS_PER_ADDRESS".into(), "1000000".into()),
        ];
        let storage = match stack {
            Stack::Sqlite => {
                let dir = TempDir::new("bench");
                env.push(("DATABASE_URL".into(), format!("sqlite://{}/bench.db?mode=rwc", dir.0.display())));
                Storage::Sqlite { _dir: dir }
            }
            Stack::PostgresRedis => {
                let redis = TestRedis::connect().await?;
                let database = TestDatabase::postgres().await?;
                env.push(("DATABASE_URL".into(), database.url().to_owned()));
                env.push(("REDIS_URL".into(), redis.url.clone()));
                env.push(("REDIS_KEY_PREFIX".into(), redis.prefix.clone()));
                Storage::PostgresRedis { _database: database, _redis: redis }
            }
        };
        env.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        Some(Self::spawn(port, env, storage).await)
    }

    /// Another instance on this one's storage and settings (for PostgreSQL + Redis: a second
    /// instance of one deployment). Drop it before this one.
    pub async fn beside(&self) -> ServerProcess {
        let port = free_port();
        let mut env = self.env.clone();
        env.retain(|(key, _)| key != "PORT");
        env.push(("PORT".into(), port.to_string()));
        Self::spawn(port, env, Storage::Shared).await
    }

    async fn spawn(port: u16, env: Vec<(String, String)>, storage: Storage) -> ServerProcess {
        let database_url = env.iter().rev().find(|(k, _)| k == "DATABASE_URL").map(|(_, v)| v.clone());

        let binary = std::env::current_exe().expect("own path").with_file_name("convo");
        let child = Command::new(&binary)
            .arg("serve")
            .env_clear()
            .envs(env.clone())
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start {}: {error} (build it: cargo build -p convo-server)", binary.display())
            });
        let app = TestApp {
            base_url: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            server: None,
            _database: None,
            database_url: database_url.unwrap_or_default(),
        };
        let mut server = ServerProcess { child, app, env, _storage: storage };
        for _ in 0..300 {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the server exited at start-up: {status}");
            }
            if server.app.client.get(format!("{}/health", server.app.base_url)).send().await.is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the server did not answer /health within 30 s");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The CPU time (user + system, every thread) the server has used so far.
    pub fn cpu_time(&self) -> Duration {
        cpu_time_of(&format!("/proc/{}/stat", self.pid()))
    }

    /// The server's resident memory, in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CPU time (user + system, every thread) this process has used so far.
pub fn own_cpu_time() -> Duration {
    cpu_time_of("/proc/self/stat")
}

/// `utime + stime` from a /proc/<pid>/stat file; zero when it cannot be read.
fn cpu_time_of(path: &str) -> Duration {
    // The kernel reports these in USER_HZ ticks, which is 100 per second on every Linux ABI.
    const TICKS_PER_SECOND: u64 = 100;
    let ticks = parse_cpu_ticks(&std::fs::read_to_string(path).unwrap_or_default());
    Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
}

/// Fields 14 (utime) and 15 (stime) of a /proc/<pid>/stat line, added up.
fn parse_cpu_ticks(stat: &str) -> u64 {
    // The command name (field 2) is in parentheses and may hold spaces and parentheses: count
    // the fields after its last ")", which start with the state (field 3).
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let field = |number: usize| fields.get(number - 3).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    field(14) + field(15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_counted_after_a_command_name_with_spaces() {
        let stat = "4242 (convo (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 56 0 0 20 0 9 0 100 0";
        assert_eq!(parse_cpu_ticks(stat), 1234 + 56);
        assert_eq!(parse_cpu_ticks(""), 0);
    }

    #[test]
    fn own_cpu_time_grows_while_this_process_computes() {
        let before = own_cpu_time();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while own_cpu_time() <= before && started.elapsed() < Duration::from_secs(30) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
            }
        }
        assert!(own_cpu_time() > before, "no CPU time counted in {:?}", started.elapsed());
    }
}
