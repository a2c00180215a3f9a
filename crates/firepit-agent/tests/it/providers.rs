//! Provider failures: retries, refused keys, unknown models, dropped and hung streams.

use std::time::{Duration, Instant};

use firepit_agent::{AgentSettings, ProviderKind, TranscriptItem, rebuild_history};

use crate::{Guest, agent, config, guard};
use firepit_testkit::model::{Reply, StandIn, anthropic, openai};

#[tokio::test]
async fn rate_limited_then_success_honours_retry_after() {
    let g = Guest::start().await;
    let m = StandIn::start(vec![
        Reply::Status(
            429,
            vec![("retry-after", "0".into())],
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#.into(),
        ),
        Reply::Status(
            529,
            vec![],
            r#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#.into(),
        ),
        Reply::Sse(anthropic("All done.", &[])),
    ])
    .await;
    let (a, rec) = agent(
        &g,
        config(ProviderKind::Anthropic, &m.url),
        AgentSettings::default(),
    );
    a.send("hi".into()).await;
    guard(a.wait_idle()).await;
    assert_eq!(m.seen().len(), 3);
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
    assert_eq!(
        rec.last(),
        TranscriptItem::RunFinished {
            reason: "done".into()
        }
    );
    let seen = &m.seen()[2];
    assert_eq!(seen.headers["x-api-key"], "test-key");
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    assert_eq!(seen.body["stream"], true);
    assert!(
        seen.body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "shell" && t["input_schema"]["type"] == "object")
    );
}

#[tokio::test]
async fn refused_key_is_a_clear_error_and_not_retried() {
    let g = Guest::start().await;
    let m = StandIn::start(vec![Reply::Status(
        401,
        vec![],
        r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#
            .into(),
    )])
    .await;
    let (a, rec) = agent(
        &g,
        config(ProviderKind::Anthropic, &m.url),
        AgentSettings::default(),
    );
    a.send("hi".into()).await;
    guard(a.wait_idle()).await;
    assert_eq!(m.seen().len(), 1);
    let e = &rec.errors()[0];
    assert!(
        e.contains("the API key was refused by Anthropic") && e.contains("ANTHROPIC_API_KEY"),
        "{e}"
    );
    assert_eq!(
        rec.last(),
        TranscriptItem::RunFinished {
            reason: "error".into()
        }
    );
    // The transcript is consistent: the user's message is the whole history, and the
    // next message starts a new run.
    assert_eq!(rebuild_history(&rec.items()), a.history().messages);
    assert!(!a.is_running());
}

#[tokio::test]
async fn unknown_model_is_a_clear_error() {
    let g = Guest::start().await;
    let m = StandIn::start(vec![Reply::Status(
        404,
        vec![],
        r#"{"error":{"message":"The model `gpt-9` does not exist","code":"model_not_found"}}"#
            .into(),
    )])
    .await;
    let (a, rec) = agent(
        &g,
        config(ProviderKind::OpenAi, &m.url),
        AgentSettings::default(),
    );
    a.send("hi".into()).await;
    guard(a.wait_idle()).await;
    let e = &rec.errors()[0];
    assert!(
        e.contains("does not know the model \"gpt-4o\"") && e.contains("FIREPIT_MODEL"),
        "{e}"
    );
    let seen = &m.seen()[0];
    assert_eq!(seen.headers["authorization"], "Bearer test-key");
    assert_eq!(seen.body["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn stream_dropped_half_way_is_a_clear_error() {
    let g = Guest::start().await;
    let mut half = openai("this answer never ends", &[]);
    half.truncate(3);
    let m = StandIn::start(vec![Reply::Sse(half)]).await;
    let (a, rec) = agent(
        &g,
        config(ProviderKind::OpenAiCompatible, &m.url),
        AgentSettings::default(),
    );
    a.send("hi".into()).await;
    guard(a.wait_idle()).await;
    let e = &rec.errors()[0];
    assert!(
        e.contains("ended the stream before the message was complete"),
        "{e}"
    );
    // The partial text is kept, marked, and the history stays rebuildable.
    assert_eq!(rebuild_history(&rec.items()), a.history().messages);
}

#[tokio::test]
async fn hung_provider_times_out_within_the_idle_timeout() {
    let g = Guest::start().await;
    let mut half = anthropic("half", &[]);
    half.truncate(10);
    let m = StandIn::start(vec![Reply::SseThenHang(half), Reply::Hang]).await;
    let mut cfg = config(ProviderKind::Anthropic, &m.url);
    cfg.idle_timeout = Duration::from_millis(400);
    cfg.retry.max_tries = 1;
    let (a, rec) = agent(&g, cfg, AgentSettings::default());
    // Mid-stream.
    let t = Instant::now();
    a.send("hi".into()).await;
    guard(a.wait_idle()).await;
    assert!(t.elapsed() < Duration::from_secs(5));
    let e = &rec.errors()[0];
    assert!(e.contains("sent nothing for 0.4s"), "{e}");
    // Before any answer.
    a.send("again".into()).await;
    guard(a.wait_idle()).await;
    let errors = rec.errors();
    assert!(errors[1].contains("sent nothing"), "{errors:?}");
    assert_eq!(
        rec.last(),
        TranscriptItem::RunFinished {
            reason: "error".into()
        }
    );
}
