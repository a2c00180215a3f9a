//! `firepit new --postgres` and `firepit start --postgres`: PostgreSQL as the session's
//! service `postgres`, run by the image's `firepit-postgres` helper. The server's data lives
//! in the machine's own files (`/var/lib/postgresql`), so it stays across stop and start and
//! goes into checkpoints like every other file; the service is kept with the session, so
//! the daemon starts it again with the session (`firepit start ID --postgres` then finds
//! it running and waits for it to answer).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use firepit_image::contents::{POSTGRES_HELPER, POSTGRES_SERVICE, POSTGRES_URL};
use firepit_wire::api::{
    Command, ExecEvent, ExecRequest, RestartPolicy, ServiceInfo, ServiceSpec, ServiceState,
};
use reqwest::Method;

use crate::cli::StartArgs;
use crate::client::{Client, ndjson};

/// The service's name in the session.
pub const SERVICE: &str = "postgres";

/// How long the server may take to answer after its service started (its first start
/// also makes the role and the database).
const READY_WITHIN: Duration = Duration::from_secs(90);

/// `firepit start ID [--postgres]`
pub async fn start_session(client: &Client, args: &StartArgs) -> Result<()> {
    crate::commands::lifecycle::transition(client, &args.id, "start").await?;
    if args.postgres {
        run_service(client, &args.id).await?;
    }
    Ok(())
}

/// The service spec that runs PostgreSQL in the foreground, restarted if it fails.
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: SERVICE.to_owned(),
        command: Command::Argv(POSTGRES_SERVICE.iter().map(|s| (*s).to_owned()).collect()),
        env: Vec::new(),
        cwd: None,
        restart: RestartPolicy::OnFailure,
    }
}

/// Starts the service in session `id` and waits until the server answers, saying where.
pub async fn run_service(client: &Client, id: &str) -> Result<()> {
    if exec_code(client, id, &["test", "-x", POSTGRES_HELPER]).await? != 0 {
        bail!(
            "this session's image has no PostgreSQL ({POSTGRES_HELPER} is missing); use the `default` image"
        );
    }
    let services: Vec<ServiceInfo> = client
        .send(client.request(Method::GET, &format!("/v1/sessions/{id}/services")))
        .await?
        .json()
        .await
        .context("reading the services")?;
    let runs = services.iter().any(|s| {
        s.name == SERVICE && matches!(s.state, ServiceState::Running | ServiceState::Backoff)
    });
    if !runs {
        client
            .send(
                client
                    .request(Method::POST, &format!("/v1/sessions/{id}/services"))
                    .json(&spec()),
            )
            .await
            .context("starting the postgres service")?;
    }
    let started = Instant::now();
    loop {
        if exec_code(client, id, &[POSTGRES_HELPER, "status"]).await? == 0 {
            break;
        }
        if started.elapsed() > READY_WITHIN {
            bail!(
                "PostgreSQL did not answer within {}s; see `firepit logs {id} {SERVICE}`",
                READY_WITHIN.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("firepit: PostgreSQL runs as the service `{SERVICE}`; apps use {POSTGRES_URL}");
    Ok(())
}

/// Runs `argv` in session `id` and returns its exit code, its output dropped.
async fn exec_code(client: &Client, id: &str, argv: &[&str]) -> Result<i32> {
    let req = ExecRequest {
        command: Command::Argv(argv.iter().map(|s| (*s).to_owned()).collect()),
        env: Vec::new(),
        cwd: None,
        stdin_base64: None,
        timeout_ms: Some(30_000),
    };
    let resp = client
        .send(
            client
                .request(Method::POST, &format!("/v1/sessions/{id}/exec"))
                .json(&req),
        )
        .await?;
    let code = ndjson(resp, "exec stream", |event: ExecEvent| {
        Ok(match event {
            ExecEvent::Exit { status } => std::ops::ControlFlow::Break(status.code.unwrap_or(128)),
            ExecEvent::Error { error } => bail!("{}", error.message),
            _ => std::ops::ControlFlow::Continue(()),
        })
    })
    .await?;
    code.context("the daemon ended the exec stream without an exit status")
}
