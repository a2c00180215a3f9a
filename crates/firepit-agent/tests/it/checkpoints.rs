//! The checkpoint the loop asks for before a turn whose tools can change files.

use std::sync::{Arc, Mutex};

use firepit_agent::tools::hooks::SessionHooks;
use firepit_agent::{Agent, AgentSettings, Model, ProviderKind, TestRun, TranscriptItem};
use serde_json::json;

use crate::{Guest, Recorded, config, guard};
use firepit_testkit::model::{Reply, StandIn, anthropic};

/// Hooks that hand out checkpoint ids and keep their names.
#[derive(Default)]
struct Checkpoints {
    names: Mutex<Vec<String>>,
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
        let mut names = self.names.lock().unwrap();
        names.push(name);
        let id = format!("cp-{}", names.len());
        Box::pin(async move { Ok(Some(id)) })
    }
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
    let rec = Recorded::default();
    let a = Agent::new(
        Model::new(config(ProviderKind::Anthropic, &m.url)),
        g.tools().with_hooks(hooks.clone()),
        rec.clone(),
        AgentSettings::default(),
        &[],
    );
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
