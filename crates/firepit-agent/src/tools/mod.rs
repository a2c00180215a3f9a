//! The tools the model may call. Each acts on the machine through its guest; one file
//! per tool (or per family: the shell's three, the services' three, git's three).
//!
//! A call never panics and never stalls the loop: unknown tools, arguments that are not
//! JSON or not of the schema's types, and failures on the machine all become a result
//! with `is_error` that says exactly what was wrong and how to fix the call.

mod ask_user;
pub(crate) mod browser;
mod edit_file;
mod exec;
mod files;
mod git;
pub mod hooks;
mod ports;
mod read_file;
mod search;
mod services;
mod shell;
mod test;
pub use test::DETECT_TESTS;
mod write_file;

use std::sync::Arc;
use std::time::Duration;

use firepit_guest_client::{ExecRequest, GuestClient};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::context::bound_output;
use crate::message::{ToolCall, ToolDef};

pub use edit_file::apply_edit;
pub use shell::clean_terminal;

/// Bytes of each output stream a command run by a tool keeps (head and tail) before the
/// result is cut to the context's limit: enough for test summaries, bounded whatever a
/// command prints.
pub const CAPTURE: usize = 256 * 1024;

/// The name of the tool that hands the turn to the person.
pub const ASK_USER: &str = "ask_user";

/// Maps a port in the machine to its preview URL.
pub type PreviewUrl = Arc<dyn Fn(u16) -> String + Send + Sync>;

/// What the tools act on: one session's machine.
#[derive(Clone)]
pub struct ToolContext {
    /// The machine's guest.
    pub guest: GuestClient,
    /// Preview URLs of ports.
    pub preview_url: PreviewUrl,
    /// The working directory (the repository): relative paths start here.
    pub workdir: String,
    /// Tool outputs are cut to this many bytes (head and tail kept).
    pub output_limit: usize,
    /// How long `shell` waits for a command by default.
    pub shell_wait: Duration,
    /// The session's browser, artifacts and event log (browser and test tools).
    pub hooks: Option<Arc<dyn hooks::SessionHooks>>,
    shell: Arc<Mutex<shell::Shell>>,
}

impl ToolContext {
    /// Tools acting on `guest` in `workdir`.
    pub fn new(
        guest: GuestClient,
        workdir: impl Into<String>,
        preview_url: PreviewUrl,
    ) -> ToolContext {
        ToolContext {
            guest,
            preview_url,
            workdir: workdir.into(),
            output_limit: 16 * 1024,
            shell_wait: Duration::from_secs(30),
            hooks: None,
            shell: Arc::new(Mutex::new(shell::Shell::default())),
        }
    }

    /// These tools with the session's hooks (browser, artifacts, test runs).
    pub fn with_hooks(mut self, hooks: Arc<dyn hooks::SessionHooks>) -> ToolContext {
        self.hooks = Some(hooks);
        self
    }

    /// An absolute path for `path` (relative ones start at the working directory).
    fn path(&self, path: &str) -> String {
        if path.starts_with('/') {
            path.to_owned()
        } else if path.is_empty() || path == "." {
            self.workdir.clone()
        } else {
            format!(
                "{}/{}",
                self.workdir.trim_end_matches('/'),
                path.trim_start_matches("./")
            )
        }
    }

    /// Runs a shell line in the working directory and collects its output: of each
    /// stream at most [`CAPTURE`] bytes (head and tail, with a note of what was cut).
    async fn sh(
        &self,
        line: String,
        timeout: Duration,
    ) -> Result<(Option<i32>, String, String), String> {
        let mut req = ExecRequest::shell(line);
        req.cwd = Some(self.workdir.clone());
        req.timeout_ms = Some(timeout.as_millis() as u64);
        let out = self
            .guest
            .exec(req)
            .await
            .map_err(|e| format!("could not start the command: {e}"))?
            .output(CAPTURE)
            .await
            .map_err(|e| format!("the command failed: {e}"))?;
        if out.status.timed_out {
            return Err(format!(
                "timed out after {}s and was killed; output so far:\n{}{}",
                timeout.as_secs(),
                out.stdout.text(),
                out.stderr.text()
            ));
        }
        Ok((out.status.code, out.stdout.text(), out.stderr.text()))
    }

    /// Interrupts what the agent runs in the shared shell (on stop).
    pub async fn interrupt(&self) {
        shell::interrupt(self).await;
    }
}

/// Quotes `s` for `/bin/sh`.
pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A tool's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    /// What the model reads (bounded).
    pub output: String,
    /// Whether the call failed.
    pub is_error: bool,
    /// A PNG the call made (`browser_screenshot`), for clients that show
    /// images (the MCP server); the agent's model reads `output` alone.
    pub png: Option<Vec<u8>>,
}

/// Every tool's definition, in a stable order.
pub fn definitions() -> Vec<ToolDef> {
    vec![
        shell::def(),
        shell::def_read(),
        shell::def_input(),
        exec::def(),
        read_file::def(),
        write_file::def(),
        edit_file::def(),
        files::def_list(),
        files::def_find(),
        search::def(),
        services::def_start(),
        services::def_stop(),
        services::def_logs(),
        ports::def(),
        git::def_status(),
        git::def_diff(),
        git::def_commit(),
        test::def(),
    ]
    .into_iter()
    .chain(browser::defs())
    .chain([ask_user::def()])
    .collect()
}

/// Parses a call's arguments into `T`, or says what is wrong with them.
fn args<T: DeserializeOwned>(name: &str, raw: &str) -> Result<T, String> {
    let v: Value = serde_json::from_str(if raw.trim().is_empty() { "{}" } else { raw }).map_err(|e| {
        format!(
            "the arguments of {name} are not valid JSON ({e}): {}. Send a JSON object that matches the tool's schema.",
            bound_output(raw, 300)
        )
    })?;
    if !v.is_object() {
        return Err(format!(
            "the arguments of {name} must be a JSON object, not {}",
            bound_output(&v.to_string(), 200)
        ));
    }
    serde_json::from_value(v).map_err(|e| {
        let schema = definitions()
            .into_iter()
            .find(|d| d.name == name)
            .map(|d| d.schema.to_string())
            .unwrap_or_default();
        format!("wrong arguments for {name}: {e}. The schema is {schema}")
    })
}

/// Control characters (NULs of a binary file, say) become U+FFFD: they would cost six
/// bytes each once escaped in JSON.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\n' | '\t') {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// Runs one call. Never panics; every failure is an `is_error` result.
pub async fn call(ctx: &ToolContext, call: &ToolCall) -> ToolOutput {
    let a = call.arguments.as_str();
    let mut png = None;
    let r = match call.name.as_str() {
        "shell" => match args(&call.name, a) {
            Ok(x) => shell::run(ctx, x).await,
            Err(e) => Err(e),
        },
        "shell_read" => match args(&call.name, a) {
            Ok(x) => shell::read(ctx, x).await,
            Err(e) => Err(e),
        },
        "shell_input" => match args(&call.name, a) {
            Ok(x) => shell::input(ctx, x).await,
            Err(e) => Err(e),
        },
        "exec" => match args(&call.name, a) {
            Ok(x) => exec::run(ctx, x).await,
            Err(e) => Err(e),
        },
        "read_file" => match args(&call.name, a) {
            Ok(x) => read_file::run(ctx, x).await,
            Err(e) => Err(e),
        },
        "write_file" => match args(&call.name, a) {
            Ok(x) => write_file::run(ctx, x).await,
            Err(e) => Err(e),
        },
        "edit_file" => match args(&call.name, a) {
            Ok(x) => edit_file::run(ctx, x).await,
            Err(e) => Err(e),
        },
        "list_files" => match args(&call.name, a) {
            Ok(x) => files::list(ctx, x).await,
            Err(e) => Err(e),
        },
        "find_files" => match args(&call.name, a) {
            Ok(x) => files::find(ctx, x).await,
            Err(e) => Err(e),
        },
        "search" => match args(&call.name, a) {
            Ok(x) => search::run(ctx, x).await,
            Err(e) => Err(e),
        },
        "service_start" => match args(&call.name, a) {
            Ok(x) => services::start(ctx, x).await,
            Err(e) => Err(e),
        },
        "service_stop" => match args(&call.name, a) {
            Ok(x) => services::stop(ctx, x).await,
            Err(e) => Err(e),
        },
        "service_logs" => match args(&call.name, a) {
            Ok(x) => services::logs(ctx, x).await,
            Err(e) => Err(e),
        },
        "ports" => ports::run(ctx).await,
        "git_status" => git::status(ctx).await,
        "git_diff" => match args(&call.name, a) {
            Ok(x) => git::diff(ctx, x).await,
            Err(e) => Err(e),
        },
        "git_commit" => match args(&call.name, a) {
            Ok(x) => git::commit(ctx, x).await,
            Err(e) => Err(e),
        },
        "test" => match args(&call.name, a) {
            Ok(x) => test::run(ctx, x).await,
            Err(e) => Err(e),
        },
        name if name.starts_with("browser_") && browser::defs().iter().any(|d| d.name == name) => {
            match args(&call.name, a) {
                Ok(x) => browser::run(ctx, name, x, &mut png).await,
                Err(e) => Err(e),
            }
        }
        ASK_USER => match args(&call.name, a) {
            Ok(x) => ask_user::run(x),
            Err(e) => Err(e),
        },
        other => Err(format!(
            "there is no tool named {:?}. The tools are: {}",
            bound_output(other, 100),
            definitions()
                .iter()
                .map(|d| d.name)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    };
    match r {
        Ok(output) => ToolOutput {
            output: bound_output(&printable(&output), ctx.output_limit),
            is_error: false,
            png,
        },
        Err(e) => ToolOutput {
            output: bound_output(&format!("error: {e}"), ctx.output_limit),
            is_error: true,
            png: None,
        },
    }
}
