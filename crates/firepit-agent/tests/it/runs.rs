//! Whole runs: tools on a real guest, parallel calls, malformed calls, stop,
//! interjections, context trimming and resuming.

use std::time::Duration;

use firepit_agent::{
    Agent, AgentSettings, Model, ProviderKind, TranscriptItem, rebuild, rebuild_history,
};
use serde_json::json;

use crate::{Guest, Recorded, agent, config, guard};
use firepit_testkit::model::{Reply, StandIn, anthropic, openai};

fn args(v: serde_json::Value) -> String {
    v.to_string()
}

#[tokio::test]
async fn writes_a_file_runs_it_in_the_shell_and_finishes() {
    let g = Guest::start().await;
    let m = StandIn::start(vec![
        Reply::Sse(anthropic(
            "I'll write it.",
            &[(
                "t1",
                "write_file",
                &args(
                    json!({"path": "hello.py", "content": "print('hello from firepit', 6 * 7)\n"}),
                ),
            )],
        )),
        Reply::Sse(anthropic(
            "",
            &[("t2", "shell", &args(json!({"command": "python3 hello.py"})))],
        )),
        Reply::Sse(anthropic("It prints the greeting.", &[])),
    ])
    .await;
    let (a, rec) = agent(
        &g,
        config(ProviderKind::Anthropic, &m.url),
        AgentSettings::default(),
    );
    assert_eq!(
        a.send("write hello.py and run it".into()).await,
        firepit_agent::Sent::Started
    );
    guard(a.wait_idle()).await;
    assert_eq!(
        std::fs::read_to_string(g.workdir().join("hello.py")).unwrap(),
        "print('hello from firepit', 6 * 7)\n"
    );
    let results = rec.results();
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(
        !results[0].2 && results[0].1.contains("wrote 35 bytes"),
        "{results:?}"
    );
    let (name, out, err) = &results[1];
    assert_eq!(name, "shell");
    assert!(
        !err && out.starts_with("exit status 0\n") && out.contains("hello from firepit 42"),
        "{out:?}"
    );
    assert!(!out.contains("__FP_"), "{out:?}");
    assert_eq!(
        rec.last(),
        TranscriptItem::RunFinished {
            reason: "done".into()
        }
    );
    // Deltas streamed, usage accounted with cost, history rebuildable.
    let items = rec.items();
    assert!(items.contains(&TranscriptItem::AssistantDelta {
        text: "I'll wr".into()
    }));
    let usage = items.iter().rev().find_map(|i| match i {
        TranscriptItem::Usage {
            total_input_tokens,
            total_output_tokens,
            total_cost_usd,
            ..
        } => Some((*total_input_tokens, *total_output_tokens, *total_cost_usd)),
        _ => None,
    });
    let (ti, to, cost) = usage.unwrap();
    assert_eq!((ti, to), (300, 150));
    assert!((cost.unwrap() - (300.0 * 3.0 + 150.0 * 15.0) / 1e6).abs() < 1e-9);
    assert_eq!(rebuild_history(&items), a.history().messages);
    // The model saw the tool result in the next request, in Anthropic's shape.
    let req = &m.seen()[2].body;
    let msgs = req["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 5);
    assert_eq!(msgs[4]["content"][0]["type"], "tool_result");
    assert_eq!(msgs[4]["content"][0]["tool_use_id"], "t2");
    // The command ran in the shared main PTY, where a person attaching now sees it.
    let mut pty = g.client.pty_attach("main", None).await.unwrap();
    let mut seen = String::new();
    guard(async {
        while !seen.contains("hello from firepit 42") {
            if let Some(firepit_guest_client::PtyEvent::Output(b)) = pty.next_event().await.unwrap()
            {
                seen.push_str(&String::from_utf8_lossy(&b));
            }
        }
    })
    .await;
    assert!(seen.contains("python3 hello.py"));
}

#[tokio::test]
async fn parallel_tool_calls_run_and_answer_in_openai_shape() {
    let g = Guest::start().await;
    let m = StandIn::start(vec![
        Reply::Sse(openai(
            "",
            &[
                (
                    "call_a",
                    "write_file",
                    &args(json!({"path": "a.txt", "content": "A"})),
                ),
                (
                    "call_b",
                    "exec",
                    &args(json!({"command": "sleep 0.3; echo b > b.txt; echo made b"})),
                ),
                (
                    "call_c",
                    "exec",
                    &args(json!({"command": "sleep 0.3; echo c"})),
                ),
            ],
        )),
        Reply::Sse(openai("Both files exist.", &[])),
    ])
    .await;
    let (a, rec) = agent(
        &g,
        config(ProviderKind::OpenAi, &m.url),
        AgentSettings::default(),
    );
    let t = std::time::Instant::now();
    a.send("make files".into()).await;
    guard(a.wait_idle()).await;
    assert!(t.elapsed() < Duration::from_millis(3000));
    assert_eq!(
        std::fs::read_to_string(g.workdir().join("a.txt")).unwrap(),
        "A"
    );
    assert_eq!(
        std::fs::read_to_string(g.workdir().join("b.txt")).unwrap(),
        "b\n"
    );
    let results = rec.results();
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|r| !r.2), "{results:?}");
    let req = &m.seen()[1].body;
    let msgs = req["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["role"], "system");
    assert_eq!(msgs[2]["tool_calls"].as_array().unwrap().len(), 3);
    assert_eq!(
        msgs[2]["tool_calls"][1]["function"]["arguments"],
        args(json!({"command": "sleep 0.3; echo b > b.txt; echo made b"}))
    );
    let tool_ids: Vec<&str> = msgs[3..6]
        .iter()
        .map(|m| {
            assert_eq!(m["role"], "tool");
            m["tool_call_id"].as_str().unwrap()
        })
        .collect();
    let mut sorted = tool_ids.clone();
    sorted.sort();
    assert_eq!(sorted, ["call_a", "call_b", "call_c"]);
    assert_eq!(
        rec.last(),
        TranscriptItem::RunFinished {
            reason: "done".into()
        }
    );
}

#[tokio::test]
async fn malformed_tool_calls_get_corrective_results_and_the_run_goes_on() {
    let g = Guest::start().await;
    let m = StandIn::start(vec![
        Reply::Sse(anthropic(
            "",
            &[
                ("t1", "write_file", "{\"path\": \"x\", \"content\": "),
                ("t2", "launch_rockets", "{}"),
                ("t3", "read_file", "{\"path\": 42}"),
                (
                    "t4",
                    "edit_file",
                    &args(json!({"path": "missing.txt", "old_text": "a", "new_text": "b"})),
                ),
            ],
        )),
        Reply::Sse(anthropic("Sorry, fixed.", &[])),
    ])
    .await;
    let (a, rec) = agent(
        &g,
        config(ProviderKind::Anthropic, &m.url),
        AgentSettings::default(),
    );
    a.send("go".into()).await;
    guard(a.wait_idle()).await;
    let r = rec.results();
    assert_eq!(r.len(), 4);
    assert!(r.iter().all(|x| x.2), "{r:?}");
    let by = |n: &str| r.iter().find(|x| x.0 == n).unwrap().1.clone();
    assert!(by("write_file").contains("not valid JSON"), "{r:?}");
    assert!(
        by("launch_rockets").contains("no tool named \"launch_rockets\"")
            && by("launch_rockets").contains("read_file"),
        "{r:?}"
    );
    assert!(
        by("read_file").contains(
            "wrong arguments for read_file: invalid type: integer `42`, expected a string"
        ),
        "{r:?}"
    );
    assert!(by("edit_file").contains("missing.txt"), "{r:?}");
    assert_eq!(
        rec.last(),
        TranscriptItem::RunFinished {
            reason: "done".into()
        }
    );
    // The malformed input is sent back as an empty object, and results follow.
    let req = &m.seen()[1].body;
    assert_eq!(req["messages"][1]["content"][0]["input"], json!({}));
    assert_eq!(req["messages"][2]["content"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn stop_cancels_the_running_tool_and_keeps_the_transcript_consistent() {
    let g = Guest::start().await;
    let m = StandIn::start(vec![
        Reply::Sse(anthropic(
            "",
            &[
                (
                    "t1",
                    "shell",
                    &args(json!({"command": "sleep 30", "wait_secs": 120})),
                ),
                ("t2", "exec", &args(json!({"command": "sleep 30"}))),
            ],
        )),
        Reply::Hang,
        Reply::Sse(anthropic("after", &[])),
    ])
    .await;
    let (a, rec) = agent(
        &g,
        config(ProviderKind::Anthropic, &m.url),
        AgentSettings::default(),
    );
    a.send("sleep".into()).await;
    guard(async {
        while !rec
            .items()
            .iter()
            .any(|i| matches!(i, TranscriptItem::ToolStarted { .. }))
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.stop());
    guard(a.wait_idle()).await;
    let r = rec.results();
    assert_eq!(r.len(), 2);
    assert!(
        r.iter().all(|x| x.1 == "stopped by the user" && x.2),
        "{r:?}"
    );
    assert_eq!(rec.last(), TranscriptItem::RunStopped);
    assert_eq!(rebuild_history(&rec.items()), a.history().messages);
    // Stop while the model hangs, then a new run works, and the shell is usable again.
    a.send("again".into()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.stop());
    guard(a.wait_idle()).await;
    assert_eq!(rec.last(), TranscriptItem::RunStopped);
    a.send("once more".into()).await;
    guard(a.wait_idle()).await;
    assert_eq!(
        rec.last(),
        TranscriptItem::RunFinished {
            reason: "done".into()
        }
    );
    let h = rebuild(&rec.items());
    assert!(!h.unfinished);
}

#[tokio::test]
async fn interjection_is_delivered_at_the_next_step() {
    let g = Guest::start().await;
    let m = StandIn::start(vec![
        Reply::Sse(anthropic(
            "",
            &[("t1", "exec", &args(json!({"command": "sleep 0.5"})))],
        )),
        Reply::Sse(anthropic("Noted: blue.", &[])),
    ])
    .await;
    let (a, rec) = agent(
        &g,
        config(ProviderKind::Anthropic, &m.url),
        AgentSettings::default(),
    );
    a.send("start".into()).await;
    guard(async {
        while !rec
            .items()
            .iter()
            .any(|i| matches!(i, TranscriptItem::ToolStarted { .. }))
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(
        a.send("make it blue".into()).await,
        firepit_agent::Sent::Interjected
    );
    guard(a.wait_idle()).await;
    assert!(rec.items().contains(&TranscriptItem::UserMessage {
        text: "make it blue".into(),
        interjection: true
    }));
    let req = &m.seen()[1].body;
    let last = req["messages"].as_array().unwrap().last().unwrap().clone();
    // The tool result and the interjection go in one user turn.
    assert_eq!(last["role"], "user");
    assert_eq!(last["content"][0]["type"], "tool_result");
    assert_eq!(last["content"][1]["text"], "make it blue");
    assert_eq!(
        rec.last(),
        TranscriptItem::RunFinished {
            reason: "done".into()
        }
    );
}

#[tokio::test]
async fn context_stays_under_budget_on_long_runs() {
    let g = Guest::start().await;
    let m = StandIn::start(vec![]).await;
    for i in 0..40 {
        m.push(Reply::Sse(anthropic(
            "",
            &[(
                &format!("t{i}"),
                "exec",
                &args(json!({"command": "head -c 6000 /dev/zero | tr '\\0' x"})),
            )],
        )));
    }
    m.push(Reply::Sse(anthropic("done", &[])));
    let budget = 20_000;
    let settings = AgentSettings {
        context_budget: budget,
        ..Default::default()
    };
    let (a, rec) = agent(&g, config(ProviderKind::Anthropic, &m.url), settings);
    a.send("make noise".into()).await;
    guard(a.wait_idle()).await;
    assert_eq!(
        rec.last(),
        TranscriptItem::RunFinished {
            reason: "done".into()
        }
    );
    for s in m.seen() {
        let size = s.body["messages"].to_string().len();
        assert!(size < budget + 4_000, "request messages {size} bytes");
    }
    assert!(
        rec.items()
            .iter()
            .any(|i| matches!(i, TranscriptItem::Compacted { .. }))
    );
    let last = m.seen().last().unwrap().body.to_string();
    assert!(last.contains("older output trimmed") && last.contains("make noise"));
    assert_eq!(rebuild_history(&rec.items()), a.history().messages);
}

#[tokio::test]
async fn an_unfinished_run_resumes_from_the_stored_transcript() {
    let g = Guest::start().await;
    let m = StandIn::start(vec![Reply::Sse(anthropic("Resumed and done.", &[]))]).await;
    let stored = vec![
        TranscriptItem::RunStarted {
            provider: "Anthropic".into(),
            model: "claude-sonnet-4-5".into(),
        },
        TranscriptItem::UserMessage {
            text: "build it".into(),
            interjection: false,
        },
        TranscriptItem::AssistantMessage {
            text: String::new(),
            tool_calls: vec![firepit_agent::ToolCall {
                id: "t1".into(),
                name: "exec".into(),
                arguments: "{\"command\":\"true\"}".into(),
            }],
        },
        TranscriptItem::ToolStarted {
            id: "t1".into(),
            name: "exec".into(),
        },
    ];
    let rec = Recorded::default();
    let a = Agent::new(
        Model::new(config(ProviderKind::Anthropic, &m.url)),
        g.tools(),
        rec.clone(),
        AgentSettings::default(),
        &stored,
    );
    assert!(a.history().unfinished);
    assert!(a.resume().await);
    guard(a.wait_idle()).await;
    assert_eq!(
        rec.last(),
        TranscriptItem::RunFinished {
            reason: "done".into()
        }
    );
    let req = &m.seen()[0].body;
    let msgs = req["messages"].as_array().unwrap();
    assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
    assert!(
        msgs[2]["content"][0]["content"]
            .as_str()
            .unwrap()
            .contains("interrupted")
    );
    let mut all = stored.clone();
    all.extend(rec.items());
    assert_eq!(rebuild_history(&all), a.history().messages);
    assert!(!a.resume().await);
}
