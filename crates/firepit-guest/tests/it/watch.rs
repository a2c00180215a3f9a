//! File watches: changes in a tree come back as the directories they touched.

use std::collections::BTreeSet;

use firepit_guest_client::{ErrorKind, FileWatch};

use crate::{GUARD, Harness};

/// Reads reports until every one of `want` was named.
async fn until_seen(w: &mut FileWatch, want: &[&str]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    tokio::time::timeout(GUARD, async {
        while !want.iter().all(|d| seen.contains(*d)) {
            let report = w.next().await.unwrap().expect("the watch goes on");
            assert!(!report.partial);
            seen.extend(report.dirs);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never saw {want:?}; saw {seen:?}"));
    seen
}

#[tokio::test]
async fn a_watch_reports_the_directories_whose_entries_changed() {
    let h = Harness::start_with(&["--no-main-pty"]).await;
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path().to_str().unwrap().to_owned();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::create_dir_all(dir.path().join("node_modules/pkg")).unwrap();
    let mut w = h.client.watch_files(Some(&top)).await.unwrap();

    // A file made in a watched subdirectory.
    std::fs::write(dir.path().join("src/main.rs"), "fn main() {}").unwrap();
    until_seen(&mut w, &[&format!("{top}/src")]).await;

    // A directory made after the watch began is watched too.
    std::fs::create_dir(dir.path().join("new")).unwrap();
    until_seen(&mut w, &[&top]).await;
    std::fs::write(dir.path().join("new/a.txt"), "a").unwrap();
    until_seen(&mut w, &[&format!("{top}/new")]).await;

    // A rename and a removal name their directory; inside a skipped directory
    // nothing is reported, so a later change is the next report.
    std::fs::write(dir.path().join("node_modules/pkg/index.js"), "x").unwrap();
    std::fs::rename(dir.path().join("new/a.txt"), dir.path().join("src/b.txt")).unwrap();
    let seen = until_seen(&mut w, &[&format!("{top}/new"), &format!("{top}/src")]).await;
    assert!(
        !seen.iter().any(|d| d.contains("node_modules")),
        "a skipped directory was reported: {seen:?}"
    );
}

#[tokio::test]
async fn a_watch_of_a_bad_root_is_refused() {
    let h = Harness::start_with(&["--no-main-pty"]).await;
    let err = h
        .client
        .watch_files(Some("relative/dir"))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let file = tempfile::NamedTempFile::new().unwrap();
    let err = h
        .client
        .watch_files(Some(file.path().to_str().unwrap()))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::NotADirectory);
    let err = h
        .client
        .watch_files(Some("/no/such/dir"))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}
