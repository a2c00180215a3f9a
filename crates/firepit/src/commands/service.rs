//! `firepit service start|stop|restart|rm|ls|logs`: a session's services,
//! which the daemon keeps with the session and starts again with it.
//!
//! `start ID NAME -- COMMAND…` starts (and keeps) a new spec, run by
//! `/bin/sh -c`; `start ID NAME` alone starts the kept one. The service named
//! `run` is the project's run command, the one the UI's Run button restarts.

use anyhow::{Context, Result};
use firepit_wire::api::{Command, RestartPolicy, ServiceInfo, ServiceSpec};
use reqwest::Method;

use crate::cli::{Restart, ServiceCommand, ServiceStartArgs};
use crate::client::Client;

/// `name` as one path segment: everything but unreserved characters
/// percent-encoded.
pub fn seg(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn path(id: &str, name: &str, rest: &str) -> String {
    format!("/v1/sessions/{}/services/{}{rest}", seg(id), seg(name))
}

/// The spec `firepit service start` asks for, or `None` for the kept one.
pub fn spec(args: &ServiceStartArgs) -> Option<ServiceSpec> {
    if args.command.is_empty() {
        return None;
    }
    Some(ServiceSpec {
        name: args.name.clone(),
        command: Command::Shell(args.command.join(" ")),
        env: args.env.clone(),
        cwd: args.cwd.clone(),
        restart: match args.restart {
            Restart::Never => RestartPolicy::Never,
            Restart::OnFailure => RestartPolicy::OnFailure,
            Restart::Always => RestartPolicy::Always,
        },
    })
}

fn said(info: &ServiceInfo, what: &str) {
    match info.pid {
        Some(pid) => eprintln!("firepit: service {} {what} (pid {pid})", info.name),
        None => eprintln!("firepit: service {} {what}", info.name),
    }
}

/// `firepit service …`
pub async fn service(client: &Client, cmd: ServiceCommand) -> Result<()> {
    match cmd {
        ServiceCommand::Ls { id } => crate::commands::logs::list(client, &id).await,
        ServiceCommand::Start(args) => {
            let req = match spec(&args) {
                Some(spec) => client
                    .request(
                        Method::POST,
                        &format!("/v1/sessions/{}/services", seg(&args.id)),
                    )
                    .json(&spec),
                None => client.request(Method::POST, &path(&args.id, &args.name, "/start")),
            };
            let info: ServiceInfo = client
                .send(req)
                .await?
                .json()
                .await
                .context("reading the service")?;
            said(&info, "started");
            Ok(())
        }
        ServiceCommand::Stop(a) => {
            client
                .send(client.request(Method::DELETE, &path(&a.id, &a.name, "")))
                .await?;
            eprintln!(
                "firepit: service {} stopped; `firepit service start {} {}` starts it again",
                a.name, a.id, a.name
            );
            Ok(())
        }
        ServiceCommand::Restart(a) => {
            let info: ServiceInfo = client
                .send(client.request(Method::POST, &path(&a.id, &a.name, "/restart")))
                .await?
                .json()
                .await
                .context("reading the service")?;
            said(&info, "restarted");
            Ok(())
        }
        ServiceCommand::Rm(a) => {
            client
                .send(
                    client
                        .request(Method::DELETE, &path(&a.id, &a.name, ""))
                        .query(&[("forget", true)]),
                )
                .await?;
            eprintln!("firepit: service {} stopped and forgotten", a.name);
            Ok(())
        }
        ServiceCommand::Logs(a) if a.clear => {
            client
                .send(client.request(Method::DELETE, &path(&a.id, &a.name, "/logs")))
                .await?;
            eprintln!("firepit: the log of {} is empty now", a.name);
            Ok(())
        }
        ServiceCommand::Logs(a) => {
            crate::commands::logs::log(client, &a.id, &a.name, a.follow).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_one_path_segment() {
        assert_eq!(seg("web-1_a.b~"), "web-1_a.b~");
        assert_eq!(seg("a b/c?d#e%"), "a%20b%2Fc%3Fd%23e%25");
        assert_eq!(seg("é"), "%C3%A9");
    }

    #[test]
    fn a_command_makes_a_spec_and_none_starts_the_kept_one() {
        let mut args = ServiceStartArgs {
            id: "s".into(),
            name: "run".into(),
            restart: Restart::OnFailure,
            cwd: Some("/workspace".into()),
            env: vec![("PORT".into(), "8000".into())],
            command: vec!["python3".into(), "-m".into(), "http.server".into()],
        };
        let s = spec(&args).unwrap();
        assert_eq!(s.command, Command::Shell("python3 -m http.server".into()));
        assert_eq!(s.restart, RestartPolicy::OnFailure);
        assert_eq!(s.env, vec![("PORT".into(), "8000".into())]);
        args.command.clear();
        assert!(spec(&args).is_none());
    }
}
