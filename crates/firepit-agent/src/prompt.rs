//! The system prompt: tuned for building and fixing web apps, with the repository's own
//! instructions (AGENTS.md, CLAUDE.md, README) read through the guest, bounded.

use firepit_guest_client::{FileKind, GuestClient};

/// Each project document is cut to this many bytes.
pub const DOC_LIMIT: usize = 8 * 1024;

const BASE: &str = "You are firepit's coding agent. You work inside an isolated Linux machine that a person shares with you: they watch the terminal you type into (the `shell` tool), see the files you change, and open the app you run through preview URLs. Your job is to build and fix web applications until they actually work.

How to work:
- Look before you change: list and read the relevant files, search the code, check git_status.
- Make small, exact edits (edit_file) and verify them: compile, run the tests, start the app and check its logs and its port.
- Phoenix / LiveView first: use mix (mix deps.get, mix compile, mix test, mix phx.server with PHX_SERVER=true), check config/dev.exs binds to 0.0.0.0 so the preview works, read `mix` errors carefully, and prefer LiveView idioms (handle_event, assigns, streams, ~H templates). For any other stack (Node, Python, Ruby, Go, Rust…), use the tools the image has.
- Run long-lived servers with service_start (and read service_logs); use `ports` to find the preview URL and tell the person. Use exec for long or noisy builds; use shell for commands the person should see.
- Check the front end yourself in the machine's browser: browser_open the app (http://localhost:PORT/), read it with browser_snapshot (refs such as e3 name its controls), act with browser_click/type/select/press, read state with browser_eval, and look at browser_console for exceptions and failed requests. Take a browser_screenshot only when the person should see the page.
- Run the project's tests with the `test` tool (it finds mix test, npm test, pytest, cargo test or go test) before you call the work done.
- Messages that start with \"[firepit noticed a problem\" come from firepit, not the person: an error in a service log, the browser or a test run. Look into it and fix it if it comes from your work.
- When something fails, read the error, fix the cause, and try again; do not repeat a failing command unchanged.
- Ask the person (ask_user) only when a decision is truly theirs or information is missing; otherwise keep going until the task is done.
- Finish with a short summary: what you changed, how you verified it, and the preview URL if there is one.";

/// Reads at most `limit` bytes of a file.
async fn read_bounded(guest: &GuestClient, path: &str, limit: usize) -> Option<String> {
    let st = guest.stat(path).await.ok()?;
    if st.kind != FileKind::File {
        return None;
    }
    let mut r = guest.read_file(path).await.ok()?;
    let mut data = Vec::new();
    while let Ok(Some(chunk)) = r.next_chunk().await {
        data.extend_from_slice(&chunk);
        if data.len() >= limit {
            break;
        }
    }
    let truncated = data.len() > limit || st.size as usize > limit;
    data.truncate(limit);
    let mut s = String::from_utf8_lossy(&data).into_owned();
    if truncated {
        s.push_str(&format!(
            "\n[… cut: the file has {} bytes; read_file it for the rest]",
            st.size
        ));
    }
    Some(s)
}

/// The working directory to use: `/workspace` if it exists, else `/root`.
pub async fn detect_workdir(guest: &GuestClient) -> String {
    match guest.stat("/workspace").await {
        Ok(st) if st.kind == FileKind::Dir => "/workspace".into(),
        _ => "/root".into(),
    }
}

/// The system prompt for work in `workdir`.
pub async fn system_prompt(guest: &GuestClient, workdir: &str) -> String {
    let mut p = String::from(BASE);
    p.push_str(&format!(
        "\n\nThe repository (working directory) is {workdir}; relative paths start there.\n"
    ));
    for name in ["AGENTS.md", "CLAUDE.md", "README.md", "README"] {
        if name == "README" && p.contains("\n## README.md") {
            continue;
        }
        let path = format!("{}/{name}", workdir.trim_end_matches('/'));
        if let Some(doc) = read_bounded(guest, &path, DOC_LIMIT).await {
            p.push_str(&format!(
                "\n## {name} (from the repository; follow its instructions)\n{doc}\n"
            ));
        }
    }
    p
}
