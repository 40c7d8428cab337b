//! The processes a drill owns and breaks besides its `redis-server` (a persistent or plain
//! [`crate::redis::RedisServer`]): a PostgreSQL cluster and `convo` instances, each on a free
//! port and a temporary directory of its own, so that killing them touches nothing shared.
//! Everything is killed and removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::TempDir;
use crate::redis::free_port;

/// Sends `signal` (`-TERM`, `-KILL`) to a process.
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill").args([signal, &pid.to_string()]).status();
}

/// A PostgreSQL cluster of the drill's own (`initdb` + `pg_ctl` in a temporary directory,
/// trust authentication, user `postgres`). As root, the tools run as the `postgres` user, since
/// `initdb` refuses root.
#[derive(Debug)]
pub struct DrillPostgres {
    pub port: u16,
    bin: PathBuf,
    as_postgres: bool,
    dir: TempDir,
}

impl DrillPostgres {
    /// The directory of `initdb`: `PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`, else
    /// the one on `PATH`.
    fn bin_dir() -> Option<PathBuf> {
        if let Ok(dir) = std::env::var("PG_BIN") {
            return Some(PathBuf::from(dir));
        }
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = entry.path().join("bin");
                bin.join("initdb").exists().then_some((version, bin))
            })
            .collect();
        versions.sort();
        if let Some((_, bin)) = versions.pop() {
            return Some(bin);
        }
        let found = Command::new("sh").args(["-c", "command -v initdb"]).output().ok()?;
        let path = String::from_utf8(found.stdout).ok()?;
        Path::new(path.trim()).parent().map(Path::to_path_buf)
    }

    pub fn start() -> Result<DrillPostgres, String> {
        let bin =
            Self::bin_dir().ok_or("initdb not found (install PostgreSQL's server package or set PG_BIN)")?;
        let root = Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.trim_ascii() == b"0");
        let dir = TempDir::new("drill-postgres");
        if root {
            let owned = Command::new("chown").args(["postgres", &dir.0.display().to_string()]).status();
            if !owned.is_ok_and(|status| status.success()) {
                return Err("as root, initdb must run as the postgres user, and there is none".into());
            }
        }
        let postgres = DrillPostgres { port: free_port(), bin, as_postgres: root, dir };
        let data = postgres.data();
        postgres.run("initdb", &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])?;
        postgres.pg_start()?;
        Ok(postgres)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> String {
        self.dir.0.join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .current_dir(&self.dir.0)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("cannot run {}: {error}", program.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!("{tool} failed: {}", String::from_utf8_lossy(&output.stderr).trim()))
        }
    }

    fn pg_start(&self) -> Result<(), String> {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.0.display());
        let log = self.dir.0.join("postgres.log").display().to_string();
        self.run("pg_ctl", &["-D", &self.data(), "-o", &options, "-l", &log, "-w", "-t", "30", "start"])
    }

    /// Stops it the way a crash would (`-m immediate`: no checkpoint, every connection cut),
    /// leaves it down for `down`, then starts it again (recovering from its WAL).
    pub fn crash_and_restart(&self, down: Duration) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]).expect("PostgreSQL stops");
        std::thread::sleep(down);
        self.pg_start().expect("PostgreSQL starts again");
    }
}

impl Drop for DrillPostgres {
    fn drop(&mut self) {
        let _ = self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }
}

/// A `convo serve` child process: the binary next to the running executable.
#[derive(Debug)]
pub struct Instance {
    pub name: &'static str,
    pub base_url: String,
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

impl Instance {
    /// Starts one with exactly `env` (nothing inherited) and waits until `/health` answers.
    pub async fn start(name: &'static str, env: &[(String, String)]) -> Instance {
        let port = free_port();
        let dir = TempDir::new("drill-convo");
        let log = dir.0.join("convo.log");
        let binary = std::env::current_exe().expect("own path").with_file_name("convo");
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(&binary)
            .arg("serve")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start {}: {error} (make drill builds it)", binary.display())
            });
        let mut instance =
            Instance { name, base_url: format!("http://127.0.0.1:{port}"), child, log, _dir: dir };
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(Some(status)) = instance.child.try_wait() {
                panic!("instance {name} exited at start-up ({status}):\n{}", instance.log_tail());
            }
            let health = client.get(format!("{}/health", instance.base_url)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return instance;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("instance {name} did not answer /health within 30 s:\n{}", instance.log_tail());
    }

    /// SIGKILL: a crash, nothing flushed or closed.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: a graceful shutdown is asked for; does not wait for it.
    pub fn terminate(&self) {
        signal(self.child.id(), "-TERM");
    }

    /// Whether the process has ended.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// The last lines the instance logged, for a failure report.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}
