//! `ui/src/wire.ts`: the TypeScript types of the wire types the web UI
//! speaks, generated from this crate, and the test that keeps the committed
//! file equal to what the types generate.
//!
//! The types derive `ts_rs::TS` under `cfg(test)` only, so nothing of it is
//! in a normal build; ts-rs reads their serde attributes (tags, renames,
//! `skip_serializing_if` with `default` → an optional field). Integers are
//! `number` (JSON has no other; every count and time here fits in 2^53).
//! `FIREPIT_UPDATE_WIRE_TS=1 cargo test -p firepit-wire --lib ts::` rewrites
//! the file; `cargo xtask ui` does that before it builds the UI.

use std::path::Path;

use ts_rs::{Config, TS};

use crate::{agent, api, checkpoint, events};

const HEADER: &str = "\
// Generated from the `firepit-wire` crate by its test `ts::tests::wire_ts_is_up_to_date`;
// do not edit. `cargo xtask ui` rewrites it (and rebuilds the UI) after a wire type changes.
";

/// Appends `export type …` of each type, with its doc comment.
macro_rules! declare {
    ($out:ident, $cfg:ident, $($t:ty),+ $(,)?) => {
        $(
            $out.push('\n');
            if let Some(docs) = <$t as TS>::docs() {
                $out.push_str(&docs);
            }
            $out.push_str("export ");
            $out.push_str(&<$t as TS>::decl(&$cfg));
            $out.push('\n');
        )+
    };
}

/// The text of `ui/src/wire.ts`.
fn generate() -> String {
    let cfg = Config::new().with_large_int("number");
    let mut out = String::from(HEADER);
    declare!(
        out,
        cfg,
        // Sessions, images, ports, shares.
        api::SessionState,
        api::NetworkMode,
        api::Limits,
        api::CreateSession,
        api::Session,
        api::UpdateSession,
        api::Usage,
        api::UsageList,
        api::HostInfo,
        api::Image,
        api::ImageSource,
        api::Port,
        api::CreateShare,
        api::Share,
        // Errors.
        api::ErrorBody,
        api::ApiError,
        // Exec, services, files, terminals.
        api::Command,
        api::ExitStatus,
        api::ExecEvent,
        api::ServiceState,
        api::RestartPolicy,
        api::ServiceSpec,
        api::ServiceInfo,
        api::LogLine,
        api::FileKind,
        api::DirEntry,
        api::SearchResult,
        api::SearchMatch,
        api::Changes,
        api::FileChange,
        api::PtyControl,
        // The agent.
        api::AgentMessage,
        api::AgentSent,
        api::AgentStopped,
        api::AgentStatus,
        api::ClosedLoopSettings,
        api::ClosedLoopChange,
        // Checkpoints.
        checkpoint::CreateCheckpoint,
        checkpoint::Checkpoint,
        checkpoint::ForkSession,
        checkpoint::SaveImage,
        agent::ToolCall,
        agent::TranscriptItem,
        // The session event log (an event carries its kind's fields, so
        // `EventKind` has no declaration of its own).
        events::Event,
    );
    // ts-rs ends a field's line with a space.
    let mut text: String = out
        .lines()
        .map(|l| l.trim_end().to_owned() + "\n")
        .collect();
    text.truncate(text.trim_end().len() + 1);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_ts_is_up_to_date() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/src/wire.ts");
        let want = generate();
        if std::env::var_os("FIREPIT_UPDATE_WIRE_TS").is_some_and(|v| v == "1") {
            std::fs::write(&path, &want).expect("writing ui/src/wire.ts");
            return;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is not what firepit-wire's types generate: run `cargo xtask ui` \
             (it rewrites the file and rebuilds the UI) and commit both",
            path.display()
        );
    }

    #[test]
    fn the_types_say_what_serde_does() {
        let text = generate();
        let decl = |name: &str| {
            let start = text
                .find(&format!("export type {name} = "))
                .unwrap_or_else(|| panic!("{name} is not declared"));
            text[start..].split("\n\n").next().unwrap().to_owned()
        };
        // Optional when skipped while absent; `| null` when sent as null.
        let session = decl("Session");
        assert!(session.contains("error?: string"), "{session}");
        assert!(session.contains("created_at: number"), "{session}");
        let service = decl("ServiceInfo");
        assert!(service.contains("pid: number | null"), "{service}");
        // Internally tagged enums carry their tag; the event is flat.
        let item = decl("TranscriptItem");
        assert!(item.contains(r#""type": "run_stopped""#), "{item}");
        let event = decl("Event");
        assert!(event.contains("seq: number"), "{event}");
        assert!(
            event.contains(r#"& ({ "type": "session_state","#),
            "{event}"
        );
        // Externally tagged: one key per variant.
        let command = decl("Command");
        assert!(
            command.contains(r#"{ "argv": Array<string> }"#),
            "{command}"
        );
    }
}
