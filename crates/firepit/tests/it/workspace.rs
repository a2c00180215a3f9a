//! What the web UI's Files tab asks of a machine: a folder as a tar archive,
//! search across files (grep where the image has no ripgrep), the changes
//! against the session's start or its last checkpoint (commits made
//! in the machine hide nothing; folders outside a repository have them too;
//! a restore brings its checkpoint's baseline back), and changes made in
//! the machine reported as `files_changed` events.

use std::time::Duration;

use crate::harness::Daemon;

async fn get_json(http: &reqwest::Client, url: &str) -> serde_json::Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// The changes of folder `path` (`base`: the session's URL).
async fn changes(http: &reqwest::Client, base: &str, path: &str) -> serde_json::Value {
    changes_since(http, base, path, None).await
}

/// The changes of folder `path` since the baseline `since` names.
async fn changes_since(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    since: Option<&str>,
) -> serde_json::Value {
    let mut query = vec![("path", path)];
    query.extend(since.map(|s| ("since", s)));
    http.get(format!("{base}/changes"))
        .query(&query)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The changed files of an answer, as (path, status), sorted.
fn files(c: &serde_json::Value) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = c["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    files.sort();
    files
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// The diff of `path` in an answer.
fn diff_of<'a>(c: &'a serde_json::Value, path: &str) -> &'a str {
    c["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("{path} not in {c}"))["diff"]
        .as_str()
        .unwrap()
}

#[tokio::test]
async fn archives_search_changes_and_file_events() {
    let d = Daemon::start("t90");
    let id = d.new_session(&["--image", "git"]);
    let http = d.http();
    let base = format!("{}/v1/sessions/{id}", d.url);
    // The start's baseline is taken in the background after the create:
    // what is written before it is there would be part of it.
    tokio::time::timeout(Duration::from_secs(60), async {
        while changes(&http, &base, "/root").await["baseline"] != "start" {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the start's baseline");
    d.sh(
        &id,
        "mkdir -p /root/proj/src /root/proj/node_modules/x && cd /root/proj && \
         printf 'fn main() {\\n    println!(\"Needle here\");\\n}\\n' > src/main.rs && \
         printf 'needle in a dependency\\n' > node_modules/x/index.js && \
         printf 'old\\n' > notes.txt && printf 'bye\\n' > gone.txt && \
         git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm start && \
         printf 'new\\n' > notes.txt && rm gone.txt && printf 'hello\\n' > fresh.txt && \
         ln -s /etc/hostname link",
    );

    // The archive: the folder's files as the machine has them (the symlink
    // as a symlink, not what it points to).
    let resp = http
        .get(format!("{base}/files/archive"))
        .query(&[("path", "/root/proj/src")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-tar");
    assert!(
        resp.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("filename=\"src.tar\"")
    );
    let tar = resp.bytes().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.tar"), &tar).unwrap();
    let list = std::process::Command::new("tar")
        .arg("-tf")
        .arg(dir.path().join("a.tar"))
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&list.stdout);
    assert!(names.contains("./src/main.rs"), "{names}");
    let resp = http
        .get(format!("{base}/files/archive"))
        .query(&[("path", "/root/proj/notes.txt")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409, "a file is not a folder");
    let resp = http
        .get(format!("{base}/files/archive"))
        .query(&[("path", "/root/nothing")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Search: the git image has no ripgrep, so grep searched, said so, and
    // left node_modules out; case does not matter for a lower-case text.
    let r: serde_json::Value = http
        .get(format!("{base}/files/search"))
        .query(&[("path", "/root/proj"), ("q", "needle")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["tool"], "grep", "{r}");
    assert!(r["note"].as_str().unwrap().contains("ripgrep"), "{r}");
    let matches = r["matches"].as_array().unwrap();
    assert_eq!(matches.len(), 1, "{r}");
    assert_eq!(matches[0]["path"], "/root/proj/src/main.rs");
    assert_eq!(matches[0]["line"], 2);
    assert!(matches[0]["text"].as_str().unwrap().contains("Needle here"));
    let resp = http
        .get(format!("{base}/files/search"))
        .query(&[("path", "/root/proj"), ("q", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // Changes since the start, per file, for the repository the folder is
    // in: its commit in the machine hides nothing, what was made and
    // removed since is not there, nor what the baseline leaves out
    // (node_modules).
    let c = changes(&http, &base, "/root/proj/src").await;
    assert_eq!(c["baseline"], "start", "{c}");
    assert!(c["taken_at"].as_i64().unwrap() > 0, "{c}");
    assert_eq!(c["root"], "/root/proj");
    let since_start = pairs(&[
        ("fresh.txt", "added"),
        ("link", "added"),
        ("notes.txt", "added"),
        ("src/main.rs", "added"),
    ]);
    assert_eq!(files(&c), since_start, "{c}");
    assert!(diff_of(&c, "notes.txt").contains("+new\n"));
    // The user's repository is left as it was: no baseline ref in it,
    // nothing staged.
    let refs = d.sh(
        &id,
        "cd /root/proj && git for-each-ref --format='%(refname)' && git diff --cached --quiet && echo unstaged",
    );
    assert_eq!(refs.lines().count(), 2, "{refs}");
    assert!(
        refs.starts_with("refs/heads/") && refs.ends_with("unstaged\n"),
        "{refs}"
    );

    // A checkpoint moves the baseline: then only what changed after it
    // shows, committed or not, in a repository or not.
    let cp: serde_json::Value = http
        .post(format!("{base}/checkpoints"))
        .json(&serde_json::json!({ "name": "before the fix" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(cp["id"].as_str().unwrap().starts_with("cp-"), "{cp}");
    d.sh(
        &id,
        "cd /root/proj && printf 'newer\\n' > fresh.txt && git add -A && \
         git -c user.name=t -c user.email=t@t commit -qm fix && \
         mkdir -p /root/plain && printf 'plain\\n' > /root/plain/new.txt",
    );
    let c = changes(&http, &base, "/root/proj").await;
    assert_eq!(c["baseline"], "checkpoint", "{c}");
    assert_eq!(c["checkpoint"], "before the fix", "{c}");
    assert_eq!(files(&c), pairs(&[("fresh.txt", "modified")]), "{c}");
    assert!(diff_of(&c, "fresh.txt").contains("-hello\n+newer\n"), "{c}");
    assert_eq!(c["baselines"], serde_json::json!(["start", "checkpoint"]));
    let c = changes_since(&http, &base, "/root/proj", Some("checkpoint")).await;
    assert_eq!(files(&c), pairs(&[("fresh.txt", "modified")]), "{c}");
    let c = changes(&http, &base, "/root/plain").await;
    assert_eq!(c["baseline"], "checkpoint", "{c}");
    assert_eq!(c["root"], "/root/plain");
    assert_eq!(files(&c), pairs(&[("new.txt", "added")]), "{c}");
    assert!(diff_of(&c, "new.txt").contains("+plain\n"));
    // The session's start is kept besides: since it, what came before the
    // checkpoint shows as well.
    let c = changes_since(&http, &base, "/root/proj", Some("start")).await;
    assert_eq!(c["baseline"], "start", "{c}");
    assert_eq!(c["baselines"], serde_json::json!(["start", "checkpoint"]));
    assert_eq!(files(&c), since_start, "{c}");
    assert!(diff_of(&c, "fresh.txt").contains("+newer\n"), "{c}");
    // A `since` that names no baseline is refused, and says what it takes.
    let resp = http
        .get(format!("{base}/changes"))
        .query(&[("path", "/root/proj"), ("since", "yesterday")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("`start`") && body.contains("`checkpoint`"),
        "{body}"
    );

    // Outside what the baseline covers and outside a repository there is
    // nothing to compare with, and the answer says why.
    let c = changes(&http, &base, "/tmp").await;
    assert_eq!(c["baseline"], "none");
    assert!(c["note"].as_str().unwrap().contains("outside them"), "{c}");

    // A change made in the machine comes out as a `files_changed` event
    // naming its folder.
    let seen = get_json(&http, &format!("{base}/events")).await;
    let since = seen.as_array().unwrap().last().unwrap()["seq"]
        .as_u64()
        .unwrap();
    d.sh(
        &id,
        "mkdir -p /root/proj/src && echo x > /root/proj/src/added.rs",
    );
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let events = get_json(&http, &format!("{base}/events?since={since}")).await;
            if let Some(e) = events.as_array().unwrap().iter().find(|e| {
                e["type"] == "files_changed"
                    && e["dirs"]
                        .as_array()
                        .is_some_and(|d| d.iter().any(|d| d == "/root/proj/src"))
            }) {
                return e.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("a files_changed event for /root/proj/src");
    assert_eq!(found["overflow"], false);

    // A restore brings the checkpoint's files back with the baseline taken
    // just before it: nothing differs.
    let cp = cp["id"].as_str().unwrap();
    let resp = http
        .post(format!("{base}/checkpoints/{cp}/restore"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let c = changes(&http, &base, "/root/proj").await;
    assert_eq!(c["baseline"], "checkpoint", "{c}");
    assert_eq!(c["checkpoint"], "before the fix", "{c}");
    assert_eq!(files(&c), Vec::<(String, String)>::new(), "{c}");
    // And the start with it.
    let c = changes_since(&http, &base, "/root/proj", Some("start")).await;
    assert_eq!(c["baseline"], "start", "{c}");
    assert_eq!(files(&c), since_start, "{c}");
    assert!(diff_of(&c, "fresh.txt").contains("+hello\n"), "{c}");

    // A session without a recorded baseline (made before there were
    // baselines) gets its repository's last commit, and is told so.
    d.sh(&id, "rm -rf /var/lib/firepit/baseline.git");
    let c = changes(&http, &base, "/root/proj").await;
    assert_eq!(c["baseline"], "git", "{c}");
    assert!(
        c["note"]
            .as_str()
            .unwrap()
            .contains("No baseline was recorded"),
        "{c}"
    );
    assert_eq!(
        files(&c),
        pairs(&[
            ("fresh.txt", "added"),
            ("gone.txt", "deleted"),
            ("link", "added"),
            ("notes.txt", "modified"),
        ]),
        "{c}"
    );
}

#[tokio::test]
async fn without_git_in_the_machine_the_changes_say_so() {
    let d = Daemon::start("wsng");
    let id = d.new_session(&["--image", "minimal"]);
    let base = format!("{}/v1/sessions/{id}", d.url);
    d.sh(&id, "mkdir -p /root/a && echo x > /root/a/f");
    // A checkpoint is still made.
    let status = d
        .http()
        .post(format!("{base}/checkpoints"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201);
    let c = changes(&d.http(), &base, "/root/a").await;
    assert_eq!(c["baseline"], "none", "{c}");
    assert!(
        c["note"]
            .as_str()
            .unwrap()
            .contains("git is not in this machine"),
        "{c}"
    );
}
