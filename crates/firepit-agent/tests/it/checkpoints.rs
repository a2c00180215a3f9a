//! The checkpoint the loop asks for before a turn whose tools can change files.

use std::sync::{Arc, Mutex};

use firepit_agent::tools::hooks::SessionHooks;
use firepit_agent::{Agent, AgentSettings, Model, ProviderKind, TestRun, TranscriptItem};
use serde_json::json;

use crate::{Guest, Recorded, config, guard};
use firepit_testkit::model::{Reply, StandIn, anthropic};

/// Hooks that hand out checkpoint ids and keep their names; with a gate, a
/// checkpoint waits for it before it is made (as the daemon's waits for the
/// session's lock while a restore holds it).
#[derive(Default)]
struct Checkpoints {
    names: Arc<Mutex<Vec<String>>>,
    gate: Option<Arc<tokio::sync::Notify>>,
    asked: tokio::sync::Notify,
}

impl SessionHooks for Checkpoints {
    fn browser(&self) -> Arc<firepit_browser::Browser> {
        unreachable!("no browser tool is called")
    }
    fn save_artifact(&self, _: &str, _: &str, _: Vec<u8>) -> Result<String, String> {
        Err("no artifacts here".into())
    }
    fn test_ran(&self, _: &TestRun) {}
    fn checkpoint(
        &self,
        name: String,
    ) -> futures::future::BoxFuture<'static, Result<Option<String>, String>> {
        self.asked.notify_one();
        let (gate, names) = (self.gate.clone(), self.names.clone());
        Box::pin(async move {
            if let Some(gate) = gate {
                gate.notified().await;
            }
            let mut names = names.lock().unwrap();
            names.push(name);
            Ok(Some(format!("cp-{}", names.len())))
        })
    }
}

/// An agent on the stand-in model `m` and guest `g`, with `hooks`.
fn agent(g: &Guest, m: &StandIn, hooks: &Arc<Checkpoints>) -> (Agent<Recorded>, Recorded) {
    let rec = Recorded::default();
    let a = Agent::new(
        Model::new(config(ProviderKind::Anthropic, &m.url)),
        g.tools().with_hooks(hooks.clone()),
        rec.clone(),
        AgentSettings::default(),
        &[],
    );
    (a, rec)
}

#[tokio::test]
async fn a_turn_that_can_change_files_gets_a_checkpoint_first_and_a_reading_one_does_not() {
    let g = Guest::start().await;
    let m = StandIn::start(vec![
        Reply::Sse(anthropic(
            "",
            &[(
                "r1",
                "read_file",
                &json!({"path": "/etc/hostname"}).to_string(),
            )],
        )),
        Reply::Sse(anthropic(
            "",
            &[
                (
                    "w1",
                    "write_file",
                    &json!({"path": "a.txt", "content": "a"}).to_string(),
                ),
                ("s1", "shell", &json!({"command": "true"}).to_string()),
                ("l1", "list_files", &json!({"path": "."}).to_string()),
            ],
        )),
        Reply::Sse(anthropic("done", &[])),
    ])
    .await;
    let hooks = Arc::new(Checkpoints::default());
    let (a, rec) = agent(&g, &m, &hooks);
    a.send("go".into()).await;
    guard(a.wait_idle()).await;
    assert_eq!(
        *hooks.names.lock().unwrap(),
        ["before write_file and 1 more"]
    );
    let items = rec.items();
    let at = items
        .iter()
        .position(|i| {
            *i == TranscriptItem::Checkpoint {
                checkpoint: "cp-1".into(),
                tool_call_ids: vec!["w1".into(), "s1".into()],
            }
        })
        .expect("the checkpoint is in the transcript");
    let started = items
        .iter()
        .position(|i| matches!(i, TranscriptItem::ToolStarted { id, .. } if id == "w1"))
        .unwrap();
    assert!(at < started, "the checkpoint comes before the tools run");
    assert_eq!(
        std::fs::read_to_string(g.workdir().join("a.txt")).unwrap(),
        "a"
    );
}

#[tokio::test]
async fn a_run_stopped_while_its_checkpoint_waits_makes_none_and_runs_no_tool() {
    let g = Guest::start().await;
    let m = StandIn::start(vec![Reply::Sse(anthropic(
        "",
        &[(
            "w1",
            "write_file",
            &json!({"path": "late.txt", "content": "a"}).to_string(),
        )],
    ))])
    .await;
    let go = Arc::new(tokio::sync::Notify::new());
    let hooks = Arc::new(Checkpoints {
        gate: Some(go.clone()),
        ..Default::default()
    });
    let (a, rec) = agent(&g, &m, &hooks);
    a.send("go".into()).await;
    guard(hooks.asked.notified()).await;
    assert!(a.stop());
    guard(a.wait_idle()).await;
    // Let go only now, as a restore ends after it stopped the agent.
    go.notify_waiters();
    tokio::task::yield_now().await;
    assert!(
        hooks.names.lock().unwrap().is_empty(),
        "a checkpoint was made"
    );
    let items = rec.items();
    assert!(
        !items
            .iter()
            .any(|i| matches!(i, TranscriptItem::Checkpoint { .. })),
        "{items:?}"
    );
    assert!(items.contains(&TranscriptItem::RunStopped), "{items:?}");
    assert!(!g.workdir().join("late.txt").exists(), "the tool ran");
}
