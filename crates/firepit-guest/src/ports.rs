//! Listening TCP ports, from NETLINK_SOCK_DIAG (never `/proc/net/tcp`).
//!
//! [`listening`] asks the kernel for an inet_diag dump of TCP sockets in state LISTEN,
//! IPv4 and IPv6 (a few microseconds). A watch sends that set, then every change, and
//! looks again only when something may have changed, so an idle machine costs nothing:
//!
//! - **a `listen()` anywhere in the machine**: [`crate::listen_notify`] reports each call
//!   the moment it is made, before it runs; the watch looks right away and again
//!   [`AFTER_EVENT`] later (1, 5, 20, 100 ms, 1 s), so a port is announced well under a
//!   millisecond after it listens (0.4 ms p50 in `cargo xtask bench`), later only when
//!   the caller is slow to be scheduled;
//! - **a socket without a peer ending** (a listener closed, its process gone): the
//!   kernel broadcasts every TCP socket it destroys to the `SKNLGRP_INET_TCP_DESTROY`
//!   and `SKNLGRP_INET6_TCP_DESTROY` groups of NETLINK_SOCK_DIAG; a classic BPF filter
//!   on the watch's socket keeps only those with a local port and no remote one, so
//!   connections ending never wake the guest. The same looks follow, and the first
//!   finds the port gone;
//! - **a slow rescan**, [`RESCAN`] after the last look, then twice as long after each
//!   rescan that found nothing new, up to [`RESCAN_MAX`] (an event or a change found
//!   starts over at [`RESCAN`]), for what neither reports:
//!   a listener stopped with `shutdown()` rather than closed, a socket made to listen
//!   by a process outside the guest's tree (the daemon's own, in the machine's network
//!   namespace), a `listen()` that ran more than a second after it was reported, a
//!   broadcast lost to a full socket buffer (`ENOBUFS` also makes the watch look at
//!   once). One look costs 0.15 to 0.7 ms of CPU (the kernel walks the host-wide
//!   listening hash, for IPv4 and for IPv6, whatever the machine's own sockets), so a
//!   rescan every 10 s costs 1000 idle machines 1.5 to 7 % of a core; backing off to
//!   [`RESCAN_MAX`] brings that under 0.5 % (`cargo xtask bench-density`).
//!
//! Where `listen()` cannot be reported (the filter could not be installed, or the guest
//! was started with `--port-poll`), a watch looks every [`POLL`] instead, as all watches
//! once did: about 1 % of a core per idle machine.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;
use std::time::Duration;

use firepit_wire::guest::{PortInfo, Response, WireError};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::conn::Stream;

/// How often a watch looks when `listen()` calls are not reported.
pub const POLL: Duration = Duration::from_millis(5);

/// When a watch looks after a `listen()` or a socket's end: the call is reported
/// before it runs, and the caller may be scheduled late.
pub const AFTER_EVENT: [Duration; 6] = [
    Duration::ZERO,
    Duration::from_millis(1),
    Duration::from_millis(5),
    Duration::from_millis(20),
    Duration::from_millis(100),
    Duration::from_secs(1),
];

/// The least time between two looks that events cause (a machine that calls
/// `listen()` in a loop makes its watches look at most this often).
const MIN_GAP: Duration = Duration::from_millis(1);

/// How long after its last look a watch that saw no event looks anyway (the
/// first time; see [`RESCAN_MAX`]).
pub const RESCAN: Duration = Duration::from_secs(10);

/// The longest a quiet watch waits between rescans: each rescan that finds
/// nothing new doubles the wait, up to this.
pub const RESCAN_MAX: Duration = Duration::from_secs(160);

/// How port watches learn of changes (the guest's command line sets them once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchSettings {
    /// Look every [`POLL`] even when `listen()` calls are reported.
    pub poll: bool,
    /// The safety rescan; `None`: never (only events make a watch look).
    pub rescan: Option<Duration>,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            poll: false,
            rescan: Some(RESCAN),
        }
    }
}

static SETTINGS: OnceLock<WatchSettings> = OnceLock::new();

/// Sets how watches work, once, before the first one starts.
pub fn configure(settings: WatchSettings) {
    let _ = SETTINGS.set(settings);
}

fn settings() -> WatchSettings {
    SETTINGS.get().copied().unwrap_or_default()
}

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

// Multicast groups of NETLINK_SOCK_DIAG (linux/sock_diag.h), as `nl_groups` bits.
const SKNLGRP_INET_TCP_DESTROY: u32 = 1;
const SKNLGRP_INET6_TCP_DESTROY: u32 = 3;
// Classic BPF opcodes (linux/bpf_common.h).
const BPF_LD_H_ABS: u16 = 0x08 | 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_RET_K: u16 = 0x06;
// Offsets of `idiag_sport` and `idiag_dport` in a broadcast (after the netlink header).
const SPORT_AT: u32 = NLMSG_HDR as u32 + 4;
const DPORT_AT: u32 = SPORT_AT + 2;

/// The socket filter of [`Destroys`]: a destroyed socket passes only with a local port
/// and no remote one (a listener, or a socket that was only bound), so the guest is
/// not woken for every connection that ends. Short messages fail the loads and drop.
fn destroy_filter() -> [libc::sock_filter; 6] {
    let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    [
        f(BPF_LD_H_ABS, 0, 0, SPORT_AT),
        f(BPF_JMP_JEQ_K, 3, 0, 0),
        f(BPF_LD_H_ABS, 0, 0, DPORT_AT),
        f(BPF_JMP_JEQ_K, 0, 1, 0),
        f(BPF_RET_K, 0, 0, u32::MAX),
        f(BPF_RET_K, 0, 0, 0),
    ]
}

/// The kernel's broadcasts of TCP sockets (IPv4 and IPv6) it destroys, those
/// without a peer only (see [`destroy_filter`]).
pub struct Destroys {
    fd: AsyncFd<OwnedFd>,
    buf: Vec<u8>,
}

impl Destroys {
    /// Joins the groups, filter attached first.
    pub fn open() -> io::Result<Destroys> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut filter = destroy_filter();
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_mut_ptr(),
        };
        // SAFETY: setsockopt with a valid program; the kernel copies it.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&prog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as u32,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: all-zero is a valid sockaddr_nl.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups =
            (1 << (SKNLGRP_INET_TCP_DESTROY - 1)) | (1 << (SKNLGRP_INET6_TCP_DESTROY - 1));
        // SAFETY: bind with a valid address of the right length.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and the
        // same for the AsyncFd's whole life.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Destroys {
            fd,
            buf: vec![0; 8 * 1024],
        })
    }

    /// Waits for broadcasts and takes all that are queued; the local ports of the
    /// sockets they name (none when broadcasts were lost to a full buffer, which the
    /// caller must treat as "anything may have changed").
    pub async fn next(&mut self) -> io::Result<Vec<u16>> {
        let mut ports = Vec::new();
        loop {
            let mut ready = self.fd.readable().await?;
            let mut got = false;
            loop {
                // SAFETY: recv into our buffer, at most its length.
                let n = unsafe {
                    libc::recv(
                        self.fd.get_ref().as_raw_fd(),
                        self.buf.as_mut_ptr().cast(),
                        self.buf.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    match e.raw_os_error() {
                        Some(libc::EAGAIN) => {
                            ready.clear_ready();
                            break;
                        }
                        Some(libc::EINTR) => continue,
                        // Broadcasts were dropped: say so, as "something ended".
                        Some(libc::ENOBUFS) => {
                            got = true;
                            continue;
                        }
                        _ => return Err(e),
                    }
                }
                got = true;
                let mut data = &self.buf[..n as usize];
                while data.len() >= NLMSG_HDR + 8 {
                    let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
                    ports.push(u16::from_be_bytes([data[20], data[21]]));
                    let aligned = (len.max(NLMSG_HDR) + 3) & !3;
                    data = &data[aligned.min(data.len())..];
                }
            }
            if got {
                return Ok(ports);
            }
        }
    }
}

/// What makes a watch look again, and when: [`Wakeups::wait`] resolves when it is
/// time; the caller looks and says so with [`Wakeups::looked`].
struct Wakeups {
    /// `listen()` calls, when they are reported; `None`: poll every [`POLL`].
    listens: Option<watch::Receiver<u64>>,
    destroys: Option<Destroys>,
    rescan: Option<Duration>,
    /// The last event, and the next of [`AFTER_EVENT`] to look at.
    burst: Option<(Instant, usize)>,
    last: Instant,
    /// Rescans in a row that found nothing new: the wait doubles with each.
    quiet: u32,
}

/// What woke [`Wakeups::wait`].
enum Woke {
    Time,
    Event,
    ListensGone,
    DestroysFailed(io::Error),
}

impl Wakeups {
    /// Subscribes to the events (before the watch's first look, so nothing that
    /// happens after it is missed).
    fn new(settings: WatchSettings, now: Instant) -> Wakeups {
        let listens = if settings.poll {
            None
        } else {
            crate::listen_notify::subscribe()
        };
        let destroys = match listens {
            Some(_) => match Destroys::open() {
                Ok(d) => Some(d),
                Err(e) => {
                    eprintln!(
                        "firepit-guest: socket-destroy broadcasts unavailable ({e}); closed ports are found by the rescan"
                    );
                    None
                }
            },
            None => None,
        };
        Wakeups {
            listens,
            destroys,
            rescan: settings.rescan,
            burst: None,
            last: now,
            quiet: 0,
        }
    }

    /// When to look next (`None`: only when an event comes).
    fn due(&self) -> Option<Instant> {
        if self.listens.is_none() {
            return Some(self.last + POLL);
        }
        let burst = self
            .burst
            .map(|(at, step)| (at + AFTER_EVENT[step]).max(self.last + MIN_GAP));
        let rescan = self.rescan.map(|r| {
            let backed_off = r.saturating_mul(1 << self.quiet.min(16));
            self.last + backed_off.min(RESCAN_MAX.max(r))
        });
        match (burst, rescan) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Something may have changed at `now`: look again at each of [`AFTER_EVENT`].
    fn kick(&mut self, now: Instant) {
        self.burst = Some((now, 0));
        self.quiet = 0;
    }

    /// The last look found a change: rescans start over at their shortest.
    fn changed(&mut self) {
        self.quiet = 0;
    }

    /// The caller looked at `now`.
    fn looked(&mut self, now: Instant) {
        if self.burst.is_none() {
            // A rescan (or the first look): the next waits longer.
            self.quiet = self.quiet.saturating_add(1).min(16);
        }
        self.last = now;
        if let Some((at, step)) = &mut self.burst {
            while *step < AFTER_EVENT.len() && *at + AFTER_EVENT[*step] <= now {
                *step += 1;
            }
            if *step == AFTER_EVENT.len() {
                self.burst = None;
            }
        }
    }

    /// Resolves when it is time to look.
    async fn wait(&mut self) {
        loop {
            let due = self.due();
            // Due already: at once (the timer would round up to its next tick).
            if due.is_some_and(|at| at <= Instant::now()) {
                return;
            }
            let woke = {
                let sleep = async {
                    match due {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                let listen = async {
                    match &mut self.listens {
                        Some(rx) => match rx.changed().await {
                            Ok(()) => Woke::Event,
                            Err(_) => Woke::ListensGone,
                        },
                        None => std::future::pending().await,
                    }
                };
                let destroy = async {
                    match &mut self.destroys {
                        Some(d) => match d.next().await {
                            Ok(_) => Woke::Event,
                            Err(e) => Woke::DestroysFailed(e),
                        },
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = sleep => Woke::Time,
                    w = listen => w,
                    w = destroy => w,
                }
            };
            match woke {
                Woke::Time => return,
                Woke::Event => self.kick(Instant::now()),
                Woke::ListensGone => self.listens = None,
                Woke::DestroysFailed(e) => {
                    eprintln!(
                        "firepit-guest: socket-destroy broadcasts failed ({e}); closed ports are found by the rescan"
                    );
                    self.destroys = None;
                }
            }
        }
    }
}

/// Streams the current ports, then every change, until the client cancels.
pub async fn watch(s: &mut Stream) -> Result<Response, WireError> {
    let mut diag = Diag::open().map_err(|e| WireError::io("watching ports", &e))?;
    let mut wake = Wakeups::new(settings(), Instant::now());
    let mut current = diag
        .listening()
        .map_err(|e| WireError::io("listing ports", &e))?;
    wake.looked(Instant::now());
    // The first look is the baseline, not a quiet rescan.
    wake.changed();
    if !s
        .send(&Response::Ports {
            ports: current.iter().copied().collect(),
        })
        .await
    {
        return Ok(Response::Done);
    }
    loop {
        tokio::select! {
            () = wake.wait() => {
                let now = diag.listening().map_err(|e| WireError::io("listing ports", &e))?;
                wake.looked(Instant::now());
                if now == current {
                    continue;
                }
                wake.changed();
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

    fn wakeups(rescan: Option<Duration>, now: Instant) -> (Wakeups, watch::Sender<u64>) {
        let (tx, rx) = watch::channel(0);
        let w = Wakeups {
            listens: Some(rx),
            destroys: None,
            rescan,
            burst: None,
            last: now,
            quiet: 0,
        };
        (w, tx)
    }

    #[test]
    fn an_idle_watch_only_rescans_less_and_less_often() {
        let t0 = Instant::now();
        let (mut w, _tx) = wakeups(Some(RESCAN), t0);
        assert_eq!(w.due(), Some(t0 + RESCAN));
        // Each quiet rescan doubles the wait, up to the longest.
        let mut at = t0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let due = w.due().unwrap();
            waits.push(due - at);
            at = due;
            w.looked(at);
        }
        let s = |n| Duration::from_secs(n);
        assert_eq!(
            waits,
            [s(10), s(20), s(40), s(80), s(160), s(160), s(160), s(160)]
        );
        // An event starts over: its looks, then a rescan 10 s after the last.
        w.kick(at);
        for d in AFTER_EVENT {
            w.looked(at + d);
        }
        let last = at + AFTER_EVENT[AFTER_EVENT.len() - 1];
        assert_eq!(w.due(), Some(last + RESCAN));
        // So does a rescan that found a change.
        for _ in 0..3 {
            let due = w.due().unwrap();
            w.looked(due);
        }
        w.changed();
        let now = w.last;
        assert_eq!(w.due(), Some(now + RESCAN));
        // A rescan set longer than the longest keeps its own length.
        let (mut w, _tx) = wakeups(Some(s(300)), t0);
        w.looked(t0);
        assert_eq!(w.due(), Some(t0 + s(300)));
        let (w, _tx) = wakeups(None, t0);
        assert_eq!(w.due(), None);
    }

    #[test]
    fn an_event_makes_the_watch_look_at_each_delay_then_rest() {
        let t0 = Instant::now();
        let (mut w, _tx) = wakeups(None, t0);
        let ev = t0 + Duration::from_secs(1);
        w.kick(ev);
        for d in AFTER_EVENT {
            assert_eq!(w.due(), Some(ev + d));
            w.looked(ev + d);
        }
        assert_eq!(w.due(), None);
    }

    #[test]
    fn looks_are_spaced_and_late_looks_skip_passed_delays() {
        let t0 = Instant::now();
        let (mut w, _tx) = wakeups(Some(RESCAN), t0);
        // An event right after a look: the next look waits for the gap.
        w.kick(t0);
        assert_eq!(w.due(), Some(t0 + MIN_GAP));
        // Looking late (at 30 ms) passes the 0, 1, 5 and 20 ms looks at once.
        w.looked(t0 + Duration::from_millis(30));
        assert_eq!(w.due(), Some(t0 + AFTER_EVENT[4]));
        // A new event starts over.
        let ev = t0 + Duration::from_millis(50);
        w.kick(ev);
        assert_eq!(w.due(), Some(ev));
    }

    #[test]
    fn without_reports_a_watch_polls() {
        let t0 = Instant::now();
        let (mut w, _tx) = wakeups(Some(RESCAN), t0);
        w.listens = None;
        assert_eq!(w.due(), Some(t0 + POLL));
    }

    #[test]
    fn the_destroy_filter_keeps_unconnected_sockets_only() {
        /// Runs the filter over a message whose ports are `sport`, `dport`.
        fn passes(msg: &[u8]) -> bool {
            let f = destroy_filter();
            let mut pc = 0;
            let mut acc = 0u32;
            loop {
                let i = f[pc];
                match i.code {
                    BPF_LD_H_ABS => {
                        let at = i.k as usize;
                        let Some(b) = msg.get(at..at + 2) else {
                            return false;
                        };
                        acc = u32::from(u16::from_be_bytes([b[0], b[1]]));
                        pc += 1;
                    }
                    BPF_JMP_JEQ_K => {
                        pc += 1 + usize::from(if acc == i.k { i.jt } else { i.jf });
                    }
                    BPF_RET_K => return i.k != 0,
                    other => panic!("unexpected opcode {other:#x}"),
                }
            }
        }
        let msg = |sport: u16, dport: u16| {
            let mut m = vec![0u8; NLMSG_HDR + MSG_LEN];
            m[20..22].copy_from_slice(&sport.to_be_bytes());
            m[22..24].copy_from_slice(&dport.to_be_bytes());
            m
        };
        assert!(passes(&msg(8000, 0)), "a listener");
        assert!(!passes(&msg(8000, 41000)), "an accepted connection");
        assert!(!passes(&msg(41000, 8000)), "a client");
        assert!(!passes(&msg(0, 0)), "never bound");
        assert!(!passes(&msg(8000, 0)[..21]), "short");
    }

    #[tokio::test]
    async fn closing_a_listener_is_broadcast_and_connections_are_not() {
        let mut d = Destroys::open().unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let client_port = client.local_addr().unwrap().port();
        let (accepted, _) = l.accept().unwrap();
        drop(client);
        drop(accepted);
        drop(l);
        let mut seen = Vec::new();
        while !seen.contains(&port) {
            seen.extend(d.next().await.unwrap());
        }
        assert!(!seen.contains(&client_port), "{seen:?}");
    }

    #[test]
    fn rejects_truncated_messages() {
        let mut msg = vec![0u8; NLMSG_HDR];
        msg[0..4].copy_from_slice(&100u32.to_ne_bytes());
        assert!(parse(&msg, libc::AF_INET as u8, &mut BTreeSet::new()).is_err());
    }
}
