//! The service tools against a real guest with hooks that keep services: what
//! the agent starts and stops reaches the session's store, and `run` without
//! a command starts the kept run command.

use std::sync::{Arc, Mutex};

use firepit_agent::ToolCall;
use firepit_agent::tools::{self, hooks::SessionHooks};
use firepit_guest_client::{Command, RestartPolicy, ServiceSpec};
use serde_json::json;

use crate::{Guest, guard};

/// Hooks that keep services in memory, as the daemon keeps them in its store.
struct Keeper {
    guest: firepit_guest_client::GuestClient,
    kept: Mutex<Vec<(ServiceSpec, bool)>>,
}

impl SessionHooks for Keeper {
    fn browser(&self) -> Arc<firepit_browser::Browser> {
        let dial: firepit_browser::Dial = Arc::new(|_| {
            Box::pin(async { Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)) })
        });
        firepit_browser::Browser::new(firepit_browser::Launcher::new(self.guest.clone(), dial))
    }
    fn save_artifact(&self, _: &str, _: &str, _: Vec<u8>) -> Result<String, String> {
        Err("no artifacts here".into())
    }
    fn test_ran(&self, _: &firepit_agent::TestRun) {}
    fn kept_service(&self, name: &str) -> Option<ServiceSpec> {
        let kept = self.kept.lock().unwrap();
        kept.iter()
            .find(|(s, _)| s.name == name)
            .map(|(s, _)| s.clone())
    }
    fn service_started(&self, spec: &ServiceSpec) {
        let mut kept = self.kept.lock().unwrap();
        kept.retain(|(s, _)| s.name != spec.name);
        kept.push((spec.clone(), true));
    }
    fn service_stopped(&self, name: &str) {
        for (s, running) in self.kept.lock().unwrap().iter_mut() {
            if s.name == name {
                *running = false;
            }
        }
    }
}

async fn call(
    ctx: &firepit_agent::ToolContext,
    name: &str,
    args: serde_json::Value,
) -> (String, bool) {
    let c = ToolCall {
        id: "c".into(),
        name: name.into(),
        arguments: args.to_string(),
    };
    let out = guard(tools::call(ctx, &c)).await;
    (out.output, out.is_error)
}

#[tokio::test]
async fn the_agents_services_are_kept_and_run_starts_the_kept_run_command() {
    let g = Guest::start().await;
    let hooks = Arc::new(Keeper {
        guest: g.client.clone(),
        kept: Mutex::new(vec![(
            ServiceSpec {
                name: "run".into(),
                command: Command::Shell("echo the-run-command; exec sleep 1000".into()),
                env: Vec::new(),
                cwd: None,
                restart: RestartPolicy::OnFailure,
            },
            false,
        )]),
    });
    let ctx = g.tools().with_hooks(hooks.clone());

    // `run` with no command: the kept spec runs, and it is wanted running now.
    let (out, err) = call(&ctx, "service_start", json!({"name": "run"})).await;
    assert!(!err, "{out}");
    assert!(out.contains("the-run-command"), "{out}");
    {
        let kept = hooks.kept.lock().unwrap();
        assert_eq!(kept.len(), 1);
        assert!(kept[0].1, "run is wanted running");
        assert_eq!(kept[0].0.restart, RestartPolicy::OnFailure);
    }

    // A new service with a command is kept as the agent gave it.
    let (out, err) = call(
        &ctx,
        "service_start",
        json!({"name": "web", "command": "exec sleep 1000"}),
    )
    .await;
    assert!(!err, "{out}");
    assert!(
        hooks
            .kept
            .lock()
            .unwrap()
            .iter()
            .any(|(s, r)| s.name == "web"
                && *r
                && s.command == Command::Shell("exec sleep 1000".into()))
    );

    // Stopped: kept, no longer wanted running.
    let (out, err) = call(&ctx, "service_stop", json!({"name": "web"})).await;
    assert!(!err, "{out}");
    assert!(
        hooks
            .kept
            .lock()
            .unwrap()
            .iter()
            .any(|(s, r)| s.name == "web" && !*r)
    );

    // No command and nothing kept: a clear error, nothing started.
    let (out, err) = call(&ctx, "service_start", json!({"name": "nothing"})).await;
    assert!(
        err && out.contains("keeps no service named \"nothing\""),
        "{out}"
    );
    let (out, err) = call(&ctx, "service_stop", json!({"name": "run"})).await;
    assert!(!err, "{out}");
}
