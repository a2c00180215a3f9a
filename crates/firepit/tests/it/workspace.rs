//! What the web UI's Files tab asks of a machine: a folder as a tar archive,
//! search across files (grep where the image has no ripgrep), the changes
//! against a git repository's last commit, and changes made in the machine
//! reported as `files_changed` events.

use std::time::Duration;

use crate::harness::Daemon;

async fn get_json(http: &reqwest::Client, url: &str) -> serde_json::Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn archives_search_changes_and_file_events() {
    let d = Daemon::start("t90");
    let id = d.new_session(&["--image", "git"]);
    let http = d.http();
    let base = format!("{}/v1/sessions/{id}", d.url);
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

    // Changes against the last commit, per file.
    let c: serde_json::Value = http
        .get(format!("{base}/changes"))
        .query(&[("path", "/root/proj/src")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c["baseline"], "git", "{c}");
    assert_eq!(c["root"], "/root/proj");
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
    assert_eq!(
        files,
        [
            ("fresh.txt".to_owned(), "added".to_owned()),
            ("gone.txt".to_owned(), "deleted".to_owned()),
            ("link".to_owned(), "added".to_owned()),
            ("notes.txt".to_owned(), "modified".to_owned()),
        ],
        "{c}"
    );
    let notes = c["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "notes.txt")
        .unwrap();
    assert!(notes["diff"].as_str().unwrap().contains("-old\n+new\n"));
    // Outside a repository there is no baseline, and the answer says why.
    let c: serde_json::Value = http
        .get(format!("{base}/changes"))
        .query(&[("path", "/tmp")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c["baseline"], "none");
    assert!(
        c["note"]
            .as_str()
            .unwrap()
            .contains("not in a git repository")
    );

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
}
