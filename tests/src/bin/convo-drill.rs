//! `make drill`: the fault drills (see `convo_tests::drill`), each on processes of its own, and a
//! table of what held. `convo-drill [name...]` runs only the named drills. Exits non-zero if a
//! drill failed, or, under `CI=true`, could not run for want of `redis-server` or `initdb`.

use std::process::ExitCode;

use convo_redis::testing::is_ci;
use convo_tests::drill::{self, Fault};

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> ExitCode {
    let chosen: Vec<String> = std::env::args().skip(1).collect();
    if let Some(unknown) = chosen.iter().find(|name| !Fault::ALL.iter().any(|f| f.name() == name.as_str())) {
        let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
        eprintln!("unknown drill {unknown}; the drills are {}", names.join(", "));
        return ExitCode::FAILURE;
    }
    let mut outcomes = Vec::new();
    let mut failed = false;
    for fault in Fault::ALL.into_iter().filter(|f| chosen.is_empty() || chosen.iter().any(|c| c == f.name()))
    {
        eprintln!("drill: {}", fault.describe());
        let started = std::time::Instant::now();
        match drill::run(fault).await {
            Ok(outcome) => {
                for problem in &outcome.problems {
                    eprintln!("  FAILED: {problem}");
                }
                eprintln!("  took {:.1} s", started.elapsed().as_secs_f64());
                failed |= !outcome.held();
                outcomes.push(outcome);
            }
            Err(reason) if is_ci() => {
                eprintln!("drill {} cannot run under CI: {reason}", fault.name());
                failed = true;
            }
            Err(reason) => eprintln!("\n*** SKIPPED drill {}: {reason} ***\n", fault.name()),
        }
    }
    if !outcomes.is_empty() {
        println!("\n{}", drill::table(&outcomes));
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
