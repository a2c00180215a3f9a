//! The `firepit` command: the daemon (`firepit up`) and its command-line client.
//!
//! `firepit __machine-launch` is internal: the namespaces backend re-executes
//! this binary to make a machine from a single-threaded process, before any
//! async runtime exists, so it is dispatched first.

mod cli;
mod cli_oci;
mod client;
mod commands;
mod settings;
mod trust;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use crate::cli::{Cli, Command};
use crate::client::Client;

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == firepit_machine::LAUNCH_ARG)
    {
        firepit_machine::launcher_main();
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FIREPIT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("firepit: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("firepit: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<i32> {
    let data_dir = cli.data_dir;
    let client = || -> Result<Client> { Ok(Client::new(settings::target(&data_dir)?)) };
    match cli.command {
        Command::Up(args) => commands::up::up(&data_dir, &args).await.map(|()| 0),
        Command::New(args) => commands::lifecycle::new(&client()?, &args)
            .await
            .map(|()| 0),
        Command::Ls => commands::lifecycle::ls(&client()?).await.map(|()| 0),
        Command::Exec(args) => commands::exec::exec(&client()?, &args).await,
        Command::Shell(args) => commands::shell::shell(&client()?, &args.id, &args.pty).await,
        Command::Cp(args) => commands::cp::cp(&client()?, &args.from, &args.to)
            .await
            .map(|()| 0),
        Command::Rename(a) => commands::lifecycle::rename(&client()?, &a)
            .await
            .map(|()| 0),
        Command::Stop(a) => commands::lifecycle::transition(&client()?, &a.id, "stop")
            .await
            .map(|()| 0),
        Command::Start(a) => commands::postgres::start_session(&client()?, &a)
            .await
            .map(|()| 0),
        Command::Rm(a) => commands::lifecycle::rm(&client()?, &a.id).await.map(|()| 0),
        Command::Run(args) => commands::lifecycle::run(&client()?, &args).await,
        Command::Agent(args) => commands::agent::agent(&client()?, &args).await,
        Command::Image(cli::ImageCommand::Save { id, name, from }) => {
            commands::checkpoint::save_image(&client()?, &id, &name, from)
                .await
                .map(|()| 0)
        }
        Command::Image(cmd) => commands::image::run(&data_dir, cmd).await.map(|()| 0),
        Command::Ports(a) => commands::ports::ports(&client()?, &a.id).await.map(|()| 0),
        Command::Logs(args) => commands::logs::logs(&client()?, &args).await.map(|()| 0),
        Command::Service(cmd) => commands::service::service(&client()?, cmd)
            .await
            .map(|()| 0),
        Command::Events(args) => commands::events::events(&client()?, &args)
            .await
            .map(|()| 0),
        Command::Share(a) => commands::share::share(&client()?, &a).await.map(|()| 0),
        Command::Unshare(a) => commands::share::unshare(&client()?, &a.id, &a.share)
            .await
            .map(|()| 0),
        Command::Mcp => commands::mcp::mcp(settings::target(&data_dir)?)
            .await
            .map(|()| 0),
        Command::Triage(args) => commands::triage::triage(&client()?, &args).await,
        Command::Checkpoint(args) => commands::checkpoint::checkpoint(&client()?, args)
            .await
            .map(|()| 0),
        Command::Checkpoints(a) => commands::checkpoint::list(&client()?, &a.id)
            .await
            .map(|()| 0),
        Command::Restore(a) => commands::checkpoint::restore(&client()?, &a)
            .await
            .map(|()| 0),
        Command::Fork(a) => commands::checkpoint::fork(&client()?, &a).await.map(|()| 0),
        Command::ClosedLoop(a) => commands::closed_loop::closed_loop(&client()?, &a)
            .await
            .map(|()| 0),
    }
}
