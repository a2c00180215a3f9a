//! A guest handed its listening socket (as machines do): it serves on it, is
//! the socket's peer, keeps the socket from what it runs, and is not dumpable.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use firepit_guest_client::{ExecRequest, GuestClient};

use crate::guard;

/// A unix socket listening at `path`, made by this process: the guest
/// listens on it again, which makes the guest the peer its clients see.
fn bound(path: &std::path::Path) -> std::os::fd::OwnedFd {
    std::os::unix::net::UnixListener::bind(path).unwrap().into()
}

#[tokio::test]
async fn a_guest_serves_on_the_socket_it_inherits_and_cannot_be_traced_by_its_user() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guest.sock");
    let fd = bound(&path);
    let raw = fd.as_raw_fd();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_firepit-guest"));
    cmd.args(["--listen-fd", "10", "--no-main-pty"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: dup2 and setresuid between fork and exec; async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 10) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Run as an unprivileged user, so its /proc entries show whether
            // it is dumpable (they are root's when it is not).
            if libc::setresgid(65534, 65534, 65534) != 0
                || libc::setresuid(65534, 65534, 65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = Reaped(cmd.spawn().unwrap());
    drop(fd);
    let pid = child.0.id();
    let client = guard(async {
        loop {
            if let Ok(c) = GuestClient::connect_unix_peer(&path, pid).await {
                return c;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(guard(client.info()).await.unwrap().pid, pid);
    // Not dumpable: its /proc files are root's although it runs as 65534.
    let status = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&status).unwrap();
    assert!(text.contains("Uid:\t65534"), "{text}");
    assert_eq!(std::fs::metadata(&status).unwrap().uid(), 0);
    // What it runs neither inherits the listening socket nor is undumpable.
    let out = guard(async {
        let mut req = ExecRequest::shell(
            "ls -l /proc/self/fd | grep -c socket; stat -c %u /proc/self/status",
        );
        req.cwd = Some("/".into());
        client
            .exec(req)
            .await
            .unwrap()
            .output(1 << 20)
            .await
            .unwrap()
    })
    .await;
    let text = out.stdout.text();
    assert_eq!(
        text.split_whitespace().collect::<Vec<_>>(),
        ["0", "65534"],
        "{text}"
    );
}

/// A guest killed and reaped however the test ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_descriptor_that_is_not_a_socket_is_refused_clearly() {
    let file = tempfile::tempfile().unwrap();
    let raw = file.as_raw_fd();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_firepit-guest"));
    cmd.args(["--listen-fd", "10"]);
    // SAFETY: dup2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 10) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("descriptor 10") && err.contains("not a socket"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_firepit-guest"))
        .args(["--listen-fd", "2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("above 2"));
}
