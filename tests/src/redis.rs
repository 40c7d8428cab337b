//! Support for the Redis tests: several servers sharing one PostgreSQL database and one Redis
//! key prefix ([`spawn_instances`]), and a `redis-server` of a test's own that it can stop and
//! start again ([`RedisServer`]), with or without its data.
//!
//! Without a reachable PostgreSQL or Redis the helpers return `None` after a loud note on
//! stderr, and the test skips; under `CI=true` they panic instead.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use convo_redis::testing::{TestRedis, is_ci};
use convo_sql::testing::TestDatabase;

use crate::process::TempDir;
use crate::{TestApp, start_server};

/// Servers on one database and one Redis prefix. The first owns the database; the Redis keys
/// under the prefix are deleted when this is dropped.
#[derive(Debug)]
pub struct Instances {
    pub apps: Vec<TestApp>,
    pub redis: TestRedis,
}

/// `count` servers on a fresh PostgreSQL database and the test Redis under a fresh prefix, with
/// extra environment variables; `None` when either service is missing (outside CI).
pub async fn spawn_instances(count: usize, vars: &[(&str, &str)]) -> Option<Instances> {
    let redis = TestRedis::connect().await?;
    let database = TestDatabase::postgres().await?;
    let url = redis.url.clone();
    let apps = spawn_on(database, count, &url, &redis.prefix, vars).await;
    Some(Instances { apps, redis })
}

/// `count` servers on `database` with `REDIS_URL=redis_url` under `prefix`.
pub async fn spawn_on(
    database: TestDatabase,
    count: usize,
    redis_url: &str,
    prefix: &str,
    vars: &[(&str, &str)],
) -> Vec<TestApp> {
    let mut database = Some(database);
    let mut apps = Vec::with_capacity(count);
    for _ in 0..count {
        let url = database.as_ref().map_or_else(
            || apps.first().map(|app: &TestApp| app.database_url.clone()).unwrap_or_default(),
            |db| db.url().to_owned(),
        );
        let mut env = vec![("REDIS_URL", redis_url), ("REDIS_KEY_PREFIX", prefix)];
        env.extend_from_slice(vars);
        apps.push(start_server(&url, database.take(), &env).await);
    }
    apps
}

/// A `redis-server` child process on a free port. A persistent one keeps an append-only file,
/// synced at every write, in a directory of its own, so that even a SIGKILL loses nothing and a
/// restart comes back with every key; any other keeps nothing.
#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    /// Where a persistent server keeps its data.
    data: Option<TempDir>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one that keeps nothing; `None` when `redis-server` is not installed (outside CI).
    pub fn start() -> Option<RedisServer> {
        match RedisServer::launch(false) {
            Ok(server) => Some(server),
            Err(error) if !is_ci() => {
                eprintln!("\n*** SKIPPED: cannot start redis-server ({error}) ***\n");
                None
            }
            Err(error) => panic!("redis-server is required under CI: {error}"),
        }
    }

    /// Starts one, persistent or not, or says why it could not.
    pub fn launch(persistent: bool) -> Result<RedisServer, String> {
        let data = persistent.then(|| TempDir::new("redis"));
        let mut server = RedisServer { port: free_port(), data, child: None };
        server.spawn()?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let mut args = vec!["--port", &port, "--bind", "127.0.0.1", "--save", ""];
        let dir = self.data.as_ref().map(|dir| dir.0.display().to_string());
        match &dir {
            Some(dir) => args.extend(["--dir", dir, "--appendonly", "yes", "--appendfsync", "always"]),
            None => args.extend(["--appendonly", "no"]),
        }
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot start redis-server: {error}"))?;
        self.child = Some(child);
        if wait_for_port(self.port, Duration::from_secs(10)) {
            Ok(())
        } else {
            Err(format!("redis-server did not listen on port {} within 10 s", self.port))
        }
    }

    /// Kills the server (SIGKILL: a crash, not a clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port: with its data if it is persistent, else empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn().expect("redis-server restarts");
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused server (SIGCONT), with everything it held.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill").args([signal, &child.id().to_string()]).status();
            assert!(status.is_ok_and(|status| status.success()), "kill {signal} failed");
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

/// Waits until something listens on `port`, or `within` passes.
fn wait_for_port(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
