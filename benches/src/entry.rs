//! The `main` every benchmark binary shares: serve as the baseline server when asked to,
//! otherwise run the benchmark on a tokio runtime and turn its outcome into an exit code.

use std::future::Future;
use std::process::ExitCode;

use crate::{baseline, BenchError};

/// Runs the benchmark built by `bench` (called inside the runtime, so it may start timers),
/// printing any error prefixed by `name`. A process spawned as the baseline server serves
/// instead and never runs the benchmark.
pub fn main<F, Fut>(name: &str, bench: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), BenchError>>,
{
    if let Some(code) = baseline::run_if_requested() {
        return code;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(async { bench().await }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}
