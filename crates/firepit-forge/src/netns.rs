//! Listening inside a machine's network namespace.
//!
//! A short-lived thread enters the namespace with `setns(CLONE_NEWNET)`,
//! binds a TCP listener there and hands it back; the socket stays in that
//! namespace, so a machine reaches it on its own 127.0.0.1 while the daemon
//! accepts its connections. Nothing listens on the host, and the machine has
//! no route to the daemon.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::Error;

/// Binds `addr` inside the network namespace at `netns` (`/proc/<pid>/ns/net`).
/// The listener is non-blocking, ready for tokio.
pub fn listen_in(netns: &Path, addr: SocketAddr) -> Result<TcpListener, Error> {
    let err = |source| Error::Netns {
        path: netns.display().to_string(),
        source,
    };
    let ns = File::open(netns).map_err(err)?;
    let handle = std::thread::Builder::new()
        .name("fp-forge-listen".into())
        .spawn(move || -> std::io::Result<TcpListener> {
            // SAFETY: setns on this short-lived thread only, with a valid
            // namespace fd; the thread binds one socket and ends.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            if r != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let l = TcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            Ok(l)
        })
        .map_err(err)?;
    match handle.join() {
        Ok(r) => r.map_err(err),
        Err(_) => Err(err(std::io::Error::other("the listening thread panicked"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_in_our_own_namespace() {
        // Our own netns stands in for a machine's (setns needs CAP_SYS_ADMIN).
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let path = format!("/proc/{}/ns/net", std::process::id());
        let l = listen_in(Path::new(&path), "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        std::net::TcpStream::connect(addr).unwrap();
        assert!(listen_in(Path::new("/nonexistent/ns"), addr).is_err());
    }
}
