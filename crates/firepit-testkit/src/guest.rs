//! A `firepit-guest` run as a plain process on the host (commands run on
//! this host, as this user), on a socket in a temporary dir: the guest's
//! protocol for real, without a machine. Killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use firepit_guest_client::GuestClient;

/// Longest a guest may take to listen.
const START: Duration = Duration::from_secs(60);

/// A running guest and a client connected to it.
pub struct HostGuest {
    child: Child,
    /// The temporary dir that holds the socket (and whatever a test puts there).
    pub dir: tempfile::TempDir,
    /// The guest's socket.
    pub socket: PathBuf,
    /// A connection to it.
    pub client: GuestClient,
}

/// The static guest executable the build made.
pub fn executable() -> &'static Path {
    Path::new(firepit_guest_bin::GUEST_BUILD_PATH)
}

impl HostGuest {
    /// Starts a guest and connects to it.
    pub async fn start() -> HostGuest {
        let dir = tempfile::tempdir().expect("a temporary dir");
        let socket = dir.path().join("guest.sock");
        let child = Command::new(executable())
            .arg("--socket")
            .arg(&socket)
            .spawn()
            .expect("the guest starts");
        let client = connect(&socket).await;
        HostGuest {
            child,
            dir,
            socket,
            client,
        }
    }

    /// The guest's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for HostGuest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects to the guest listening (or about to) on `socket`.
pub async fn connect(socket: &Path) -> GuestClient {
    tokio::time::timeout(START, async {
        loop {
            if let Ok(c) = GuestClient::connect_unix(socket).await {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the guest listens")
}

/// Starts a guest on `socket` in a mount namespace of its own whose `/etc` is
/// an empty tmpfs, so that what is written there (a machine's gitconfig, say)
/// stays there (root only). The child's pid is the guest's.
pub fn spawn_with_own_etc(socket: &Path) -> Child {
    let _ = std::fs::remove_file(socket);
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount -t tmpfs firepit-test /etc && exec \"$0\" --socket \"$1\"")
        .arg(executable())
        .arg(socket)
        .spawn()
        .expect("unshare runs")
}
