//! What the benchmark binaries share: becoming the machine launcher when the
//! backend re-executes them as one, and running an async benchmark to an
//! exit code.

use std::future::Future;
use std::process::ExitCode;

/// The `main` of an async benchmark called `name`: the machine launcher
/// when re-executed as one (before anything else, threads above all), else
/// `bench` on a multi-threaded runtime, its error printed as
/// `name: error: …`.
pub fn main_async<F>(name: &str, bench: impl FnOnce() -> F) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == firepit_machine::LAUNCH_ARG)
    {
        firepit_machine::launcher_main();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(bench()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
