//! `convo [serve | migrate | openapi]`: the Convo chat server.

use std::process::ExitCode;

use convo_domain::redact_url;
use convo_server::{Config, Environment};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of the system allocator: the request path allocates many small, short-lived
/// values, which glibc's malloc serves at a measurably higher CPU cost, and glibc keeps the
/// memory of a burst (password hashing during a login storm) instead of giving it back.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
usage: convo [COMMAND]

commands:
  serve     run the server (the default); migrations are applied first
  migrate   apply pending database migrations and exit
  openapi   print the OpenAPI document

Configuration comes from the environment and an optional .env file; see README.md.";

#[tokio::main]
async fn main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".to_owned());
    match command.as_str() {
        "openapi" => {
            print!("{}", convo_api::openapi_json());
            return ExitCode::SUCCESS;
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        "serve" | "migrate" => {}
        other => {
            eprintln!("convo: unknown command `{other}`\n\n{USAGE}");
            return ExitCode::FAILURE;
        }
    }

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("convo: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Held to the end: dropping it flushes the log lines still queued.
    let _log_writer = init_logging(config.environment);

    let outcome = if command == "migrate" { migrate(&config).await } else { serve(&config).await };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("convo: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: &Config) -> Result<(), Box<dyn std::error::Error>> {
    convo_server::migrate(config).await?;
    tracing::info!(database = %redact_url(&config.database_url), "migrations applied");
    Ok(())
}

async fn serve(config: &Config) -> Result<(), Box<dyn std::error::Error>> {
    if config.jwt_secret_generated {
        tracing::warn!("JWT_SECRET is unset: using a random secret, so tokens end when the server restarts");
    }
    if config.session_secret.is_some() {
        tracing::info!("SESSION_SECRET is accepted for compatibility and unused: sessions live server-side");
    }
    let server = convo_server::start(config, true).await?;
    let base = format!("http://{}", server.address());
    tracing::info!(database = %redact_url(&config.database_url), "Convo is listening on {base}");
    println!("Convo API:  {base}\nSwagger UI: {base}/docs");
    server.wait().await?;
    Ok(())
}

/// One line per event; JSON in production, for log shippers. Lines go to stdout through a
/// writer thread, so a request never waits on a slow terminal or pipe: if that thread falls
/// more than its buffer behind, lines are dropped rather than stalling the server.
fn init_logging(environment: Environment) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(writer);
    match environment {
        Environment::Production => builder.json().init(),
        Environment::Development => builder.init(),
    }
    guard
}
