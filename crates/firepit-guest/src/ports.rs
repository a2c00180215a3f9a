//! Listening TCP ports, from NETLINK_SOCK_DIAG (never `/proc/net/tcp`).
//!
//! [`listening`] asks the kernel for an inet_diag dump of TCP sockets in state LISTEN,
//! IPv4 and IPv6 (a few microseconds). A watch polls that dump every [`POLL`] while it
//! runs, and only then, and reports differences.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use firepit_wire::guest::{PortInfo, Response, WireError};

use crate::conn::Stream;

/// How often a watch looks.
pub const POLL: Duration = Duration::from_millis(5);

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const TCP_LISTEN: u32 = 10;
const NLMSG_HDR: usize = 16;
// struct inet_diag_req_v2: family, protocol, ext, pad (u8 each), states (u32), id (48 bytes).
const REQ_LEN: usize = 4 + 4 + 48;
// struct inet_diag_msg: family, state, timer, retrans (u8), id (48), expires, rqueue,
// wqueue, uid, inode (u32 each).
const MSG_LEN: usize = 4 + 48 + 20;

/// A NETLINK_SOCK_DIAG socket.
pub struct Diag {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl Diag {
    /// Opens the netlink socket.
    pub fn open() -> io::Result<Diag> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        Ok(Diag {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            buf: vec![0; 64 * 1024],
        })
    }

    /// The TCP sockets listening now.
    pub fn listening(&mut self) -> io::Result<BTreeSet<PortInfo>> {
        let mut set = BTreeSet::new();
        for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            self.dump(family, &mut set)?;
        }
        Ok(set)
    }

    fn dump(&mut self, family: u8, set: &mut BTreeSet<PortInfo>) -> io::Result<()> {
        let mut req = [0u8; NLMSG_HDR + REQ_LEN];
        req[0..4].copy_from_slice(&((NLMSG_HDR + REQ_LEN) as u32).to_ne_bytes());
        req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        req[6..8].copy_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
        req[NLMSG_HDR] = family;
        req[NLMSG_HDR + 1] = libc::IPPROTO_TCP as u8;
        req[NLMSG_HDR + 4..NLMSG_HDR + 8].copy_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: sendto with a valid buffer and address.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            // SAFETY: recv into our buffer, at most its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if parse(&self.buf[..n as usize], family, set)? {
                return Ok(());
            }
        }
    }
}

/// Parses one netlink datagram into `set`; true once the dump is done.
fn parse(mut data: &[u8], family: u8, set: &mut BTreeSet<PortInfo>) -> io::Result<bool> {
    while data.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(data[4..6].try_into().unwrap());
        if len < NLMSG_HDR || len > data.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated netlink message",
            ));
        }
        match kind as i32 {
            libc::NLMSG_DONE => return Ok(true),
            libc::NLMSG_ERROR => {
                let errno = data
                    .get(16..20)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, i32::from_ne_bytes);
                return Err(io::Error::from_raw_os_error(-errno));
            }
            _ if kind == SOCK_DIAG_BY_FAMILY && len >= NLMSG_HDR + MSG_LEN => {
                let m = &data[NLMSG_HDR..len];
                let port = u16::from_be_bytes([m[4], m[5]]);
                let src = &m[8..24];
                let addr = if family == libc::AF_INET as u8 {
                    IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3]))
                } else {
                    IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(src).unwrap()))
                };
                set.insert(PortInfo { addr, port });
            }
            _ => {}
        }
        let aligned = (len + 3) & !3;
        data = &data[aligned.min(data.len())..];
    }
    Ok(false)
}

/// The TCP sockets listening now.
pub fn listening() -> io::Result<BTreeSet<PortInfo>> {
    Diag::open()?.listening()
}

/// Streams the current ports, then every change, until the client cancels.
pub async fn watch(s: &mut Stream) -> Result<Response, WireError> {
    let mut diag = Diag::open().map_err(|e| WireError::io("watching ports", &e))?;
    let mut current = diag
        .listening()
        .map_err(|e| WireError::io("listing ports", &e))?;
    if !s
        .send(&Response::Ports {
            ports: current.iter().copied().collect(),
        })
        .await
    {
        return Ok(Response::Done);
    }
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = diag.listening().map_err(|e| WireError::io("listing ports", &e))?;
                if now == current {
                    continue;
                }
                for p in current.difference(&now) {
                    if !s.send(&Response::PortClosed(*p)).await { return Ok(Response::Done) }
                }
                for p in now.difference(&current) {
                    if !s.send(&Response::PortOpened(*p)).await { return Ok(Response::Done) }
                }
                current = now;
            }
            _ = s.rx.recv() => return Ok(Response::Done), // cancelled or disconnected
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_a_loopback_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let set = listening().unwrap();
        assert!(
            set.contains(&PortInfo {
                addr: "127.0.0.1".parse().unwrap(),
                port
            }),
            "{set:?}"
        );
        drop(l);
        assert!(
            !listening()
                .unwrap()
                .iter()
                .any(|p| p.port == port && p.addr.is_loopback() && p.addr.is_ipv4())
        );
    }

    #[test]
    fn rejects_truncated_messages() {
        let mut msg = vec![0u8; NLMSG_HDR];
        msg[0..4].copy_from_slice(&100u32.to_ne_bytes());
        assert!(parse(&msg, libc::AF_INET as u8, &mut BTreeSet::new()).is_err());
    }
}
