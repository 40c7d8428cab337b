// Real `convo` servers for the browser tests: the binary cargo built, on a free port, on a SQLite
// file in a temporary directory, or several instances on a fresh PostgreSQL database and the
// local Redis under a fresh key prefix. Everything is removed again by `stop()`.

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, openSync, readFileSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";

const REPO = resolve(import.meta.dirname, "../..");
const ADMIN_URL = process.env.TEST_POSTGRES_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = process.env.TEST_REDIS_URL || "redis://127.0.0.1:6379";

/** The `convo` binary: `CONVO_BIN`, else the debug (then release) build in the target dir. */
export function convoBinary() {
  if (process.env.CONVO_BIN) return resolve(process.env.CONVO_BIN);
  const target = resolve(REPO, process.env.CARGO_TARGET_DIR || "target");
  const found = ["debug", "release"].map((p) => join(target, p, "convo")).find((p) => existsSync(p));
  if (!found) throw new Error(`no convo binary under ${target}: run cargo build --bin convo`);
  return found;
}

async function freePort() {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

function baseEnv(extra) {
  return {
    PATH: process.env.PATH,
    HOST: "127.0.0.1",
    JWT_SECRET: "browser-tests-secret-browser-tests-secret",
    RUST_LOG: "warn",
    // The tests fill a room with history over REST, and register from one address.
    RATE_LIMIT_POINTS: "1000",
    RATE_LIMIT_DURATION: "10",
    REGISTRATIONS_PER_ADDRESS: "1000",
    ...extra,
  };
}

class Instance {
  constructor(child, baseUrl, logPath) {
    this.child = child;
    this.baseUrl = baseUrl;
    this.logPath = logPath;
  }

  log() {
    try {
      return readFileSync(this.logPath, "utf8");
    } catch {
      return "";
    }
  }
}

async function startInstance(dir, env, name) {
  const port = await freePort();
  const logPath = join(dir, `${name}.log`);
  const out = openSync(logPath, "a");
  const child = spawn(convoBinary(), ["serve"], {
    cwd: dir,
    env: baseEnv({ ...env, PORT: String(port) }),
    stdio: ["ignore", out, out],
  });
  const instance = new Instance(child, `http://127.0.0.1:${port}`, logPath);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`convo exited at start-up:\n${instance.log()}`);
    try {
      const response = await fetch(`${instance.baseUrl}/health`);
      if (response.ok) return instance;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGKILL");
  throw new Error(`convo did not answer /health within 30 s:\n${instance.log()}`);
}

async function stopInstance(instance) {
  if (instance.child.exitCode !== null) return;
  const exited = new Promise((r) => instance.child.once("exit", r));
  instance.child.kill("SIGTERM");
  const timer = setTimeout(() => instance.child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}

/** One server on a SQLite file of its own, with the in-process adapters, and `vars` on top. */
export async function sqliteStack(vars = {}) {
  const dir = mkdtempSync(join(tmpdir(), "convo-browser-"));
  const env = { DATABASE_URL: `sqlite://${dir}/convo.db?mode=rwc`, ...vars };
  const instance = await startInstance(dir, env, "sqlite");
  return {
    instances: [instance],
    async stop() {
      await stopInstance(instance);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Whether PostgreSQL (through psql) and Redis (through redis-cli) answer here. */
export function postgresRedisReachable() {
  try {
    execFileSync("psql", [ADMIN_URL, "-qAtc", "SELECT 1"], { stdio: "pipe" });
    execFileSync("redis-cli", ["-u", REDIS_URL, "ping"], { stdio: "pipe" });
    return true;
  } catch {
    return false;
  }
}

/**
 * `count` servers on one fresh PostgreSQL database and the local Redis under a fresh key prefix:
 * the production setup, where a message sent through one instance reaches the others' sockets.
 * The migrations run once first (`convo migrate`), as the server runs them at start-up.
 */
export async function postgresRedisStack(count) {
  const dir = mkdtempSync(join(tmpdir(), "convo-browser-"));
  const suffix = randomBytes(6).toString("hex");
  const database = `convo_browser_${suffix}`;
  const prefix = `convo-browser-${suffix}:`;
  execFileSync("psql", [ADMIN_URL, "-qc", `CREATE DATABASE "${database}"`], { stdio: "pipe" });
  const url = new URL(ADMIN_URL);
  url.pathname = `/${database}`;
  const env = { DATABASE_URL: url.toString(), REDIS_URL, REDIS_KEY_PREFIX: prefix };
  const instances = [];
  const stop = async () => {
    await Promise.all(instances.map(stopInstance));
    try {
      execFileSync("psql", [ADMIN_URL, "-qc", `DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`], {
        stdio: "pipe",
      });
    } catch (error) {
      console.error(`could not drop ${database}: ${error.message}`);
    }
    deleteRedisKeys(prefix);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    execFileSync(convoBinary(), ["migrate"], { cwd: dir, env: baseEnv(env), stdio: "pipe" });
    for (let i = 0; i < count; i += 1) instances.push(await startInstance(dir, env, `instance-${i}`));
  } catch (error) {
    await stop();
    throw error;
  }
  return { instances, stop };
}

function deleteRedisKeys(prefix) {
  try {
    const keys = execFileSync("redis-cli", ["-u", REDIS_URL, "--scan", "--pattern", `${prefix}*`], {
      encoding: "utf8",
    })
      .split("\n")
      .filter(Boolean);
    for (let i = 0; i < keys.length; i += 500) {
      execFileSync("redis-cli", ["-u", REDIS_URL, "del", ...keys.slice(i, i + 500)], { stdio: "pipe" });
    }
  } catch (error) {
    console.error(`could not delete the Redis keys under ${prefix}: ${error.message}`);
  }
}
