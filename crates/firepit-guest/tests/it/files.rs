//! File operations end to end.

use bytes::Bytes;
use firepit_guest_client::{ErrorKind, FileKind, WriteOptions};

use crate::{Harness, guard};

#[tokio::test]
async fn small_file_round_trip_stat_list_rename_remove() {
    let h = Harness::start_with(&["--no-main-pty"]).await;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_str().unwrap().to_string();
    let path = format!("{base}/a/b/hello.txt");
    let c = &h.client;
    let err = guard(c.write_file_all(&path, Bytes::from("x"), WriteOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let opts = WriteOptions {
        create_parents: true,
        mode: Some(0o600),
    };
    guard(c.write_file_all(&path, Bytes::from("hello"), opts))
        .await
        .unwrap();
    assert_eq!(
        guard(c.read_file_all(&path, 1 << 20)).await.unwrap(),
        "hello"
    );
    let err = guard(c.read_file_all(&path, 4)).await.unwrap_err();
    assert!(
        matches!(err, firepit_guest_client::Error::TooLarge { limit: 4 }),
        "{err}"
    );
    let st = guard(c.stat(&path)).await.unwrap();
    assert_eq!((st.kind, st.size, st.mode), (FileKind::File, 5, 0o600));
    let entries = guard(c.list_dir(&format!("{base}/a/b"))).await.unwrap();
    assert_eq!(entries.len(), 1, "no temporary files left: {entries:?}");
    assert_eq!(entries[0].name, "hello.txt");
    let moved = format!("{base}/a/moved.txt");
    guard(c.rename(&path, &moved)).await.unwrap();
    assert_eq!(
        guard(c.stat(&path)).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    guard(c.mkdir(&format!("{base}/x/y/z"), true))
        .await
        .unwrap();
    assert_eq!(
        guard(c.mkdir(&format!("{base}/x"), false))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        guard(c.remove(&format!("{base}/a"), false))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::DirectoryNotEmpty
    );
    guard(c.remove(&format!("{base}/a"), true)).await.unwrap();
    assert_eq!(
        guard(c.stat(&moved)).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn twenty_mib_streamed_write_and_read() {
    let h = Harness::start_with(&["--no-main-pty"]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = format!("{}/big.bin", dir.path().display());
    let data: Vec<u8> = (0..20 * 1024 * 1024u32)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let data = Bytes::from(data);
    let mut w = guard(h.client.write_file(&path, WriteOptions::default()))
        .await
        .unwrap();
    for chunk in data.chunks(300_000) {
        guard(w.write(Bytes::copy_from_slice(chunk))).await.unwrap();
    }
    guard(w.finish()).await.unwrap();
    let r = guard(h.client.read_file(&path)).await.unwrap();
    assert_eq!(r.size(), data.len() as u64);
    let back = guard(r.read_all(64 << 20)).await.unwrap();
    assert!(back == data, "content differs");
}

#[tokio::test]
async fn abandoned_write_leaves_no_file() {
    let h = Harness::start_with(&["--no-main-pty"]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = format!("{}/half.txt", dir.path().display());
    let mut w = guard(h.client.write_file(&path, WriteOptions::default()))
        .await
        .unwrap();
    w.write(Bytes::from("partial")).await.unwrap();
    drop(w);
    let base = dir.path().to_str().unwrap().to_string();
    guard(async {
        loop {
            if h.client.list_dir(&base).await.unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn bad_paths_are_rejected() {
    let h = Harness::start_with(&["--no-main-pty"]).await;
    for p in ["/tmp/../etc/passwd", "relative", "/tmp/a\0b"] {
        assert_eq!(
            guard(h.client.read_file_all(p, 1 << 20))
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput,
            "{p:?}"
        );
        assert_eq!(
            guard(h.client.stat(p)).await.unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }
    let err = guard(h.client.write_file("/tmp/../x", WriteOptions::default()))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains(".."), "{err}");
}
