//! The system prompt: tuned for building and fixing web apps, with what the machine's image
//! has (from its manifest, on the host: the machine cannot change it) and the repository's own
//! instructions (AGENTS.md, CLAUDE.md, README) read through the guest, bounded.

use firepit_guest_client::{FileKind, GuestClient};

/// Each project document is cut to this many bytes.
pub const DOC_LIMIT: usize = 8 * 1024;

const BASE: &str = "You are firepit's coding agent. You work inside an isolated Linux machine that a person shares with you: they watch the terminal you type into (the `shell` tool), see the files you change, and open the app you run through preview URLs. Your job is to build and fix web applications until they actually work.

How to work:
- Look before you change: list and read the relevant files, search the code, check git_status.
- Make small, exact edits (edit_file) and verify them: compile, run the tests, start the app and check its logs and its port.
- Phoenix / LiveView first: use mix (mix deps.get, mix compile, mix test, mix phx.server with PHX_SERVER=true), check config/dev.exs binds to 0.0.0.0 so the preview works, read `mix` errors carefully, and prefer LiveView idioms (handle_event, assigns, streams, ~H templates). For any other stack (Node, Python, Ruby, Go, Rust…), use the tools the image has.
- Run long-lived servers with service_start (and read service_logs); use `ports` to find the preview URL and tell the person. The app's own server is the service `run`, the project's run command (the person's Run button restarts it; services start again with the session). Use exec for long or noisy builds; use shell for commands the person should see.
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

/// What the machine's image has, so the agent uses it rather than looking for it.
pub fn image_section(image: &firepit_image::Manifest) -> String {
    let mut s = format!(
        "\n\n## The machine (image `{}`)\n{}",
        image.name,
        image.describe()
    );
    if image.tools().is_empty() {
        s.push_str(
            "This image records no tool versions: check with `command -v` before you rely on a tool, and install what is missing with apt-get.\n",
        );
    } else {
        s.push_str(
            "Use these as they are; do not spend steps checking for them or installing others.\n",
        );
    }
    if firepit_image::contents::postgres_major(&image.versions).is_some() {
        s.push_str(&format!(
            "To run PostgreSQL for an app, start it as a service: service_start with name `postgres` and command `{}` (it keeps its data across stops), then point the app at {}.\n",
            firepit_image::contents::POSTGRES_SERVICE.join(" "),
            firepit_image::contents::POSTGRES_URL
        ));
    }
    s
}

/// The system prompt for work in `workdir`, in a machine made from `image`.
pub async fn system_prompt(
    guest: &GuestClient,
    workdir: &str,
    image: Option<&firepit_image::Manifest>,
) -> String {
    let mut p = String::from(BASE);
    if let Some(image) = image {
        p.push_str(&image_section(image));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(versions: &[(&str, &str)]) -> firepit_image::Manifest {
        firepit_image::Manifest {
            name: "default".into(),
            recipe: "default".into(),
            suite: "trixie".into(),
            versions: versions
                .iter()
                .map(|(p, v)| ((*p).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_prompt_names_the_images_tools() {
        let m = manifest(&[
            ("nodejs", "20.19.2+dfsg-1+deb13u3"),
            ("npm", "9.2.0~ds1-3"),
            ("elixir", "1.18.3.dfsg-1"),
            ("erlang-base", "1:27.3.4.1+dfsg-1"),
            ("python3", "3.13.5-1"),
            ("golang-go", "2:1.24~2"),
            ("rustc", "1.85.1+dfsg1-1"),
            ("cargo", "1.85.1+dfsg1-1"),
            ("postgresql", "17+278"),
            ("postgresql-17", "17.12-0+deb13u1"),
            ("sqlite3", "3.46.1-7"),
            ("redis-server", "5:8.0.2-3"),
            ("chromium", "156.0.8078.114-1~deb13u1"),
        ]);
        let s = image_section(&m);
        for want in [
            "## The machine (image `default`)",
            "Debian trixie",
            "Node.js (node) 20.19.2",
            "npm 9.2.0",
            "Elixir (elixir, mix, iex) 1.18.3",
            "Erlang/OTP (erl) 27.3.4.1",
            "Python (python3) 3.13.5",
            "Go (go) 1.24",
            "Rust (rustc) 1.85.1",
            "PostgreSQL (firepit-postgres, psql) 17.12",
            "SQLite (sqlite3) 3.46.1",
            "Redis (redis-server, redis-cli) 8.0.2",
            "Chromium (chromium) 156.0.8078.114",
            "command `/usr/local/bin/firepit-postgres run`",
            "postgres://postgres:postgres@localhost:5432/app",
            "do not spend steps",
        ] {
            assert!(s.contains(want), "{want:?} not in:\n{s}");
        }
    }

    #[test]
    fn an_image_without_versions_says_so() {
        let s = image_section(&manifest(&[]));
        assert!(s.contains("records no tool versions"), "{s}");
        assert!(!s.contains("PostgreSQL"), "{s}");
    }
}
