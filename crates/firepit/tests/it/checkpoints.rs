//! Checkpoints, restore and fork end to end: the CLI, the daemon, real machines.

use serde_json::Value;

use crate::harness::Daemon;

fn base(d: &Daemon, id: &str) -> String {
    format!("{}/v1/sessions/{id}", d.url)
}

/// The CLI's error for `args` (it must fail).
fn fails(d: &Daemon, args: &[&str]) -> String {
    let out = d.run(args);
    assert!(!out.status.success(), "{args:?} succeeded: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn checkpoint_restore_and_fork_from_the_cli() {
    let d = Daemon::start("cp1");
    let id = d.new_session(&[]);
    d.sh(
        &id,
        "echo one > /root/f && mkdir /root/d && ln -s /root/f /root/d/l && chmod 600 /root/f",
    );
    // A service that must come back after the restore.
    let spec = serde_json::json!({
        "name": "loop",
        "command": {"argv": ["sh", "-c", "while true; do sleep 1; done"]},
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        d.http()
            .post(format!("{}/services", base(&d, &id)))
            .json(&spec)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 201);

    let cp = d
        .ok(&["checkpoint", &id, "--name", "first one"])
        .trim()
        .to_owned();
    assert!(cp.starts_with("cp-"), "{cp}");
    d.sh(
        &id,
        "echo two > /root/f && rm -r /root/d && echo new > /root/new",
    );
    let cp2 = d.ok(&["checkpoint", &id]).trim().to_owned();
    let list = d.ok(&["checkpoints", &id]);
    assert!(
        list.contains(&cp) && list.contains("first one") && list.contains("user"),
        "{list}"
    );
    assert!(
        list.lines().any(|l| l.starts_with(&cp2) && l.contains(&cp)),
        "cp2's parent is cp: {list}"
    );

    d.ok(&["restore", &id, &cp]);
    assert_eq!(
        d.sh(&id, "cat /root/f; stat -c %a /root/f; readlink /root/d/l")
            .trim(),
        "one\n600\n/root/f"
    );
    assert_eq!(d.sh(&id, "test -e /root/new || echo gone").trim(), "gone");
    let services = d.get_json(&format!("/v1/sessions/{id}/services"));
    assert!(
        services
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "loop" && s["state"] == "running"),
        "{services}"
    );
    // And forward again, to the later checkpoint.
    d.ok(&["restore", &id, &cp2]);
    assert_eq!(d.sh(&id, "cat /root/f /root/new").trim(), "two\nnew");

    // A fork from the first checkpoint runs beside its parent.
    let child = d.ok(&["fork", &id, "--from", &cp]).trim().to_owned();
    assert_ne!(child, id);
    assert_eq!(d.sh(&child, "cat /root/f").trim(), "one");
    d.sh(&child, "echo child > /root/f");
    assert_eq!(d.sh(&id, "cat /root/f").trim(), "two");
    let now = d.ok(&["fork", &id]).trim().to_owned();
    assert_eq!(d.sh(&now, "cat /root/new").trim(), "new");

    // The log says what happened.
    let events = d.get_json(&format!("/v1/sessions/{id}/events?since=0"));
    let types: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    for t in ["checkpoint_made", "restored", "forked"] {
        assert!(types.contains(&t), "{t} not in {types:?}");
    }
    let restored: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "restored")
        .collect();
    assert_eq!(restored[0]["checkpoint"], cp.as_str());
    assert_eq!(restored[0]["services"][0], "loop");

    // Bad input: clear errors, nothing changed.
    let err = fails(&d, &["restore", &id, "cp-nope"]);
    assert!(err.contains("no checkpoint cp-nope"), "{err}");
    let err = fails(&d, &["restore", &child, &cp]);
    assert!(
        err.contains("no checkpoint"),
        "another session's checkpoint: {err}"
    );
    let err = fails(&d, &["restore", &id, "../x"]);
    assert!(err.contains("checkpoint id"), "{err}");
    assert_eq!(d.sh(&id, "cat /root/f").trim(), "two");

    d.ok(&["checkpoint", "rm", &id, &cp2]);
    assert!(!d.ok(&["checkpoints", &id]).contains(&cp2));
    let err = fails(&d, &["checkpoint", "rm", &id, &cp2]);
    assert!(err.contains("no checkpoint"), "{err}");

    d.ok(&["rm", &id]);
    let err = fails(&d, &["restore", &id, &cp]);
    assert!(err.contains("no session"), "{err}");
    // Its forks live on.
    assert_eq!(d.sh(&child, "cat /root/f").trim(), "child");
}

#[test]
fn a_session_without_a_disk_pool_checkpoints_restores_and_forks_by_copies() {
    let d = Daemon::start_with("cp2", &[("FIREPIT_DISK_POOL_SIZE", "off")]);
    let id = d.new_session(&[]);
    d.sh(
        &id,
        "echo one > /root/f; mkdir -p /root/d; echo keep > /root/d/k",
    );
    let cp = d.ok(&["checkpoint", &id]).trim().to_owned();
    d.sh(&id, "echo two > /root/f; rm -r /root/d");
    assert_eq!(
        d.ok(&["checkpoints", &id]).lines().count(),
        2,
        "the header and the copy"
    );
    d.ok(&["restore", &id, &cp]);
    assert_eq!(d.sh(&id, "cat /root/f /root/d/k").trim(), "one\nkeep");
    let child = d.ok(&["fork", &id, "--from", &cp]).trim().to_owned();
    assert_eq!(d.sh(&child, "cat /root/f").trim(), "one");
    d.sh(&child, "echo child > /root/f");
    assert_eq!(d.sh(&id, "cat /root/f").trim(), "one");
    d.ok(&["checkpoint", "rm", &id, &cp]);
    assert_eq!(d.ok(&["checkpoints", &id]).lines().count(), 1);
}

#[test]
fn two_restores_at_once_queue_and_leave_the_session_whole() {
    let d = Daemon::start("cp3");
    let id = d.new_session(&[]);
    d.sh(&id, "echo a > /root/f");
    let a = d.ok(&["checkpoint", &id]).trim().to_owned();
    d.sh(&id, "echo b > /root/f");
    let b = d.ok(&["checkpoint", &id]).trim().to_owned();
    d.sh(&id, "echo c > /root/f");
    let outs: Vec<std::process::Output> = std::thread::scope(|s| {
        let ta = s.spawn(|| d.run(&["restore", &id, &a]));
        let tb = s.spawn(|| d.run(&["restore", &id, &b]));
        vec![ta.join().unwrap(), tb.join().unwrap()]
    });
    for o in &outs {
        assert!(o.status.success(), "{o:?}");
    }
    let f = d.sh(&id, "cat /root/f");
    assert!(f.trim() == "a" || f.trim() == "b", "{f}");
    let info = d.get_json(&format!("/v1/sessions/{id}"));
    assert_eq!(info["state"], "running", "{info}");
    let events = d.get_json(&format!("/v1/sessions/{id}/events?since=0"));
    let restored = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "restored")
        .count();
    assert_eq!(restored, 2);
    // The last one restored is what the files say.
    let last = events
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["type"] == "restored")
        .unwrap();
    let want = if f.trim() == "a" { &a } else { &b };
    assert_eq!(last["checkpoint"], want.as_str());
}

#[test]
fn an_image_saved_from_a_session_makes_new_sessions_with_its_files() {
    let d = Daemon::start("cp4");
    // The tests' images dir is shared: a name of this run's, removed after.
    let name = format!("saved-{}", std::process::id());
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _remove = Remove(crate::harness::images_dir().join(&name));
    let id = d.new_session(&[]);
    d.sh(
        &id,
        "mkdir -p /opt/app && echo prepared > /opt/app/ready && chown 1000:1000 /opt/app/ready \
         && ln -s /opt/app/ready /opt/app/link && rm /etc/debian_version",
    );
    let cp = d.ok(&["checkpoint", &id]).trim().to_owned();
    d.sh(&id, "echo later > /opt/app/later");
    let out = d.ok(&["image", "save", &id, &name, "--from", &cp]);
    assert!(out.contains(&format!("saved image {name}")), "{out}");
    // Its name is taken now.
    let err = fails(&d, &["image", "save", &id, &name]);
    assert!(err.contains("exists already"), "{err}");

    let fresh = d.new_session(&["--image", &name]);
    assert_eq!(
        d.sh(
            &fresh,
            "cat /opt/app/ready; stat -c %u:%g /opt/app/ready; readlink /opt/app/link"
        )
        .trim(),
        "prepared\n1000:1000\n/opt/app/ready"
    );
    assert_eq!(
        d.sh(&fresh, "test -e /opt/app/later || echo no-later; test -e /etc/debian_version || echo no-version").trim(),
        "no-later\nno-version",
        "the checkpoint's moment, with what it deleted gone"
    );
    // The image's own tree is owned as images are, not by the session's range.
    let root = crate::harness::images_dir().join(&name).join("rootfs");
    let tree = root.join("opt/app/ready");
    let base = std::fs::metadata(root.join("etc"))
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    let owner = std::fs::metadata(&tree)
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    assert_eq!(owner, base + 1000);
}
