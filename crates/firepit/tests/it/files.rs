//! Files through the API and `firepit cp`: round trips, and paths that try to
//! leave the machine.

use crate::harness::Daemon;

#[test]
fn copy_round_trips_a_large_file() {
    let d = Daemon::start("t4");
    let id = d.new_session(&[]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("blob");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    d.ok(&["cp", src.to_str().unwrap(), &format!("{id}:/root/blob")]);
    assert_eq!(
        d.sh(&id, "wc -c < /root/blob").trim(),
        data.len().to_string()
    );
    let back = dir.path().join("back");
    d.ok(&["cp", &format!("{id}:/root/blob"), back.to_str().unwrap()]);
    assert_eq!(std::fs::read(&back).unwrap(), data);

    let out = d.run(&[
        "cp",
        &format!("{id}:/no/such/file"),
        dir.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(!dir.path().join("file").exists(), "nothing half-written");
}

#[tokio::test]
async fn paths_cannot_leave_the_machine() {
    let d = Daemon::start("t5");
    let id = d.new_session(&[]);
    let http = d.http();
    let files = format!("{}/v1/sessions/{id}/files", d.url);
    for path in [
        "../../etc/passwd",
        "/../../etc/passwd",
        "/root/../../etc/shadow",
        "etc/passwd",
    ] {
        let resp = http
            .get(&files)
            .query(&[("path", path)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path} was not refused");
        let body: serde_json::Value = resp.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("..") || message.contains("absolute"),
            "{body}"
        );
    }
    // An absolute path is the machine's own file, not the host's.
    let resp = http
        .get(&files)
        .query(&[("path", "/etc/hostname")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap().trim(), id);

    // Listing, stat, mkdir, rename, remove.
    let list = format!("{files}/list");
    let resp = http
        .post(format!("{files}/mkdir"))
        .json(&serde_json::json!({"path": "/root/a/b", "parents": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = http
        .post(format!("{files}/rename"))
        .json(&serde_json::json!({"from": "/root/a", "to": "/root/c"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let entries: serde_json::Value = http
        .get(&list)
        .query(&[("path", "/root/c")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(entries[0]["name"], "b");
    assert_eq!(entries[0]["kind"], "dir");
    let resp = http
        .delete(&files)
        .query(&[("path", "/root/c"), ("recursive", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = http
        .get(format!("{files}/stat"))
        .query(&[("path", "/root/c")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}
