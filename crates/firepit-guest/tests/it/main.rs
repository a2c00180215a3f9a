//! End-to-end tests: the real `firepit-guest` binary on a temporary socket, driven by
//! `firepit-guest-client`.

mod exec;
mod files;
mod listen;
mod ports;
mod pty;
mod services;
mod watch;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use firepit_guest_client::GuestClient;

/// Hang guard for anything a test waits on.
pub const GUARD: Duration = Duration::from_secs(20);

/// A running guest; SIGTERM on drop.
pub struct Harness {
    child: Child,
    _dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub client: GuestClient,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(&[]).await
    }

    pub async fn start_with(args: &[&str]) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("guest.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_firepit-guest"))
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .spawn()
            .unwrap();
        let client = tokio::time::timeout(GUARD, async {
            loop {
                if let Ok(c) = GuestClient::connect_unix(&socket).await {
                    return c;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("guest socket appears");
        Harness {
            child,
            _dir: dir,
            socket,
            client,
        }
    }
}

impl Harness {
    /// The guest's pid.
    pub fn socket_owner(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the guest after it was killed.
    pub fn reap(&mut self) {
        let _ = self.child.wait();
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // SAFETY: plain syscall on our child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Runs `fut` under the hang guard.
pub async fn guard<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(GUARD, fut).await.expect("hang guard")
}

#[tokio::test]
async fn info_reports_the_guest() {
    let h = Harness::start().await;
    let info = guard(h.client.info()).await.unwrap();
    assert_eq!(info.protocol, firepit_wire::guest::PROTOCOL_VERSION);
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert!(info.pid > 1);
}
