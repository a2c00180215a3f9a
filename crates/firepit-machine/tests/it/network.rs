//! Network isolation: loopback-only machines, and NAT machines that reach
//! neither the host, nor other machines, nor link-local metadata addresses,
//! but do reach "the internet" (a network namespace this test makes); the
//! firewall's drops of private ranges; and that no machine speaks as another
//! on the bridge.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use firepit_machine::{Backend, Network};

use crate::harness::{Machine, VETH_PREFIX, backend, config, shared, spec};

fn connect(m: &Machine, host: &str, port: u16) -> String {
    m.ok(&format!(
        "python3 -c \"import socket\ntry:\n socket.create_connection(('{host}', {port}), timeout=1); print('open')\nexcept Exception as e: print(type(e).__name__)\""
    ))
}

#[test]
fn machine_without_network_has_only_loopback() {
    let _g = shared();
    let m = Machine::create(spec("it-nonet", Network::None));
    assert_eq!(m.ok("ls /sys/class/net"), "lo");
    assert!(backend().inspect(&m.id).unwrap().address.is_none());
}

#[test]
fn nat_machine_reaches_the_outside_only() {
    let _g = shared();
    let host_listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = host_listener.local_addr().unwrap().port();
    let loopback = TcpListener::bind("127.0.0.1:0").unwrap();
    let lo_port = loopback.local_addr().unwrap().port();

    let a = Machine::create(spec("it-net-a", Network::Nat));
    let b = Machine::create(spec("it-net-b", Network::Nat));
    let addr_b = backend().inspect(&b.id).unwrap().address.unwrap();
    assert!(a.ok("cat /sys/class/net/eth0/operstate") == "up");

    // The host, by the bridge address and by its loopback.
    assert_eq!(connect(&a, "10.89.0.1", port), "TimeoutError");
    assert_eq!(connect(&a, "127.0.0.1", lo_port), "ConnectionRefusedError");
    // Metadata.
    assert_eq!(connect(&a, "169.254.169.254", 80), "TimeoutError");
    // Another machine.
    b.ok("(python3 -m http.server 8000 >/dev/null 2>&1 &)");
    // Until it listens.
    b.ok("for i in $(seq 200); do python3 -c \"import socket; socket.create_connection(('127.0.0.1', 8000), timeout=1)\" 2>/dev/null && exit 0; sleep 0.1; done; exit 1");
    assert_eq!(connect(&b, "127.0.0.1", 8000), "open");
    assert_ne!(connect(&a, &addr_b.to_string(), 8000), "open");
    // The daemon's way in (previews, the browser): a socket the backend
    // makes inside the machine reaches its loopback.
    let lo = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    backend()
        .dial(&b.id, &[lo(8000)])
        .expect("no connection to the machine's loopback");
    assert!(matches!(
        backend().dial(&b.id, &[lo(8001)]),
        Err(firepit_machine::Error::Refused(8001))
    ));
    // And its way to be reached (the forge broker): a listener the backend
    // binds inside one machine answers that machine on its loopback, and no
    // other machine.
    let l = backend().listen(&b.id, lo(0)).unwrap();
    let l_port = l.local_addr().unwrap().port();
    assert_eq!(connect(&b, "127.0.0.1", l_port), "open");
    assert_eq!(connect(&a, "127.0.0.1", l_port), "ConnectionRefusedError");
    drop(l);

    // "The internet": a namespace of our own, reached through NAT.
    let _inet = Internet::new();
    let seen = a.ok(
        "python3 -c \"import socket\ns=socket.create_connection(('198.18.0.2', 9000), timeout=2)\nprint(s.recv(100).decode())\"",
    );
    assert_eq!(seen, "198.18.0.1", "egress is not masqueraded");
}

/// A network namespace `fpit-inet` at 198.18.0.2 (benchmarking range),
/// linked to the host at 198.18.0.1, that answers every connection on port
/// 9000 with the peer's address.
struct Internet;

impl Internet {
    fn new() -> Self {
        let _ = Self::teardown();
        let script = "set -e
            ip netns add fpit-inet
            ip link add fpit-h type veth peer name fpit-i netns fpit-inet
            ip addr add 198.18.0.1/24 dev fpit-h
            ip link set fpit-h up
            ip -n fpit-inet addr add 198.18.0.2/24 dev fpit-i
            ip -n fpit-inet link set fpit-i up
            ip -n fpit-inet link set lo up
            ip netns exec fpit-inet python3 -c \"
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('198.18.0.2', 9000)); s.listen(8)
while True:
    c, a = s.accept(); c.sendall(a[0].encode()); c.close()
\" >/dev/null 2>&1 &";
        let ok = Command::new("sh")
            .args(["-c", script])
            .status()
            .unwrap()
            .success();
        assert!(ok, "setting up the stand-in internet failed");
        // Until its server listens (it answers and closes).
        let deadline = Instant::now() + Duration::from_secs(20);
        let server = std::net::SocketAddr::from(([198, 18, 0, 2], 9000));
        while std::net::TcpStream::connect_timeout(&server, Duration::from_secs(1)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the stand-in internet never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Internet
    }

    fn teardown() -> std::io::Result<std::process::ExitStatus> {
        Command::new("sh")
            .args(["-c", "ip netns pids fpit-inet 2>/dev/null | xargs -r kill -9; ip link del fpit-h 2>/dev/null; ip netns del fpit-inet 2>/dev/null; true"])
            .status()
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        let _ = Self::teardown();
    }
}

fn nft(args: &[&str]) -> String {
    let out = Command::new("nft").args(args).output().unwrap();
    assert!(out.status.success(), "nft {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_firewall_drops_private_and_fabric_ranges() {
    let _g = shared();
    let m = Machine::create(spec("it-net-fw", Network::Nat));
    let table = config().nft_table;
    let inet = nft(&["list", "table", "inet", &table]);
    for range in [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "168.63.129.16",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "fc00::/7",
        "fe80::/10",
    ] {
        assert!(inet.contains(range), "{range} is not in {inet}");
    }
    assert!(
        inet.contains("iifname \"fpitbr0\" ip daddr != @allowed4 ip daddr @blocked4 drop"),
        "{inet}"
    );
    assert!(
        inet.contains("iifname \"fpitbr0\" ip6 daddr @blocked6 drop"),
        "{inet}"
    );
    // The machine is admitted on the bridge as its own veth, MAC and address.
    let addr = backend().inspect(&m.id).unwrap().address.unwrap();
    let slot = u32::from(addr) - u32::from(Ipv4Addr::new(10, 89, 0, 0));
    let mac = m.ok("cat /sys/class/net/eth0/address");
    let bridge = nft(&["list", "table", "bridge", &table]);
    // The bridge's own MAC is set, so it does not follow its ports as
    // machines come and go.
    let bridge_mac =
        std::fs::read_to_string(format!("/sys/class/net/{}/address", config().bridge)).unwrap();
    assert_eq!(bridge_mac.trim(), "02:66:0a:59:00:01");
    assert!(
        bridge.contains(&format!("\"{VETH_PREFIX}{slot}\" . {mac} . {addr}")),
        "{bridge}"
    );
}

/// Frames that reach a host interface, as a packet socket sees them.
struct Capture(OwnedFd);

impl Capture {
    fn open(ifname: &str) -> Capture {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2), checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        assert!(
            fd >= 0,
            "packet socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: a fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = std::ffi::CString::new(ifname).unwrap();
        // SAFETY: sockaddr_ll is plain data; the name is NUL-terminated.
        let r = unsafe {
            let mut sa: libc::sockaddr_ll = std::mem::zeroed();
            sa.sll_family = libc::AF_PACKET as u16;
            sa.sll_protocol = proto;
            sa.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: a timeval option on our socket.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        Capture(fd)
    }

    /// The frames that came in until one carrying `marker` did.
    fn until(&self, marker: &[u8]) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut frames = Vec::new();
        loop {
            assert!(
                Instant::now() < deadline,
                "{:?} never reached the bridge",
                String::from_utf8_lossy(marker)
            );
            let mut buf = vec![0u8; 2048];
            // SAFETY: sockaddr_ll is plain data; buf and sa are writable.
            let (n, outgoing) = unsafe {
                let mut sa: libc::sockaddr_ll = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                let n = libc::recvfrom(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut sa as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                );
                (n, sa.sll_pkttype == libc::PACKET_OUTGOING)
            };
            if n <= 0 || outgoing {
                continue;
            }
            buf.truncate(n as usize);
            let done = buf.windows(marker.len()).any(|w| w == marker);
            frames.push(buf);
            if done {
                return frames;
            }
        }
    }
}

/// Runs `f` on a thread of its own inside the network namespace `netns`,
/// pinned to one CPU so that what it sends arrives in the order sent.
fn in_netns<T: Send + 'static>(netns: PathBuf, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let ns = std::fs::File::open(netns).unwrap();
        // SAFETY: setns and sched_setaffinity on this thread alone, which
        // ends when f returns; cpu_set_t is plain data.
        unsafe {
            assert_eq!(libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET), 0);
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(libc::sched_getcpu().max(0) as usize, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
        f()
    })
    .join()
    .unwrap()
}

fn send_udp(from: Ipv4Addr, to: Ipv4Addr, payload: &[u8]) {
    let s = UdpSocket::bind((from, 0)).unwrap_or_else(|e| panic!("bind {from}: {e}"));
    s.send_to(payload, (to, 9)).unwrap();
}

fn parse_mac(text: &str) -> [u8; 6] {
    let v: Vec<u8> = text
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

/// An ARP request for `target` from `eth_src`, saying the sender is
/// `sha`/`spa`, sent raw on `eth0` of the caller's network namespace.
fn send_arp(eth_src: [u8; 6], sha: [u8; 6], spa: Ipv4Addr, target: Ipv4Addr) {
    let mut f = Vec::with_capacity(60);
    f.extend([0xff; 6]);
    f.extend(eth_src);
    f.extend([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend(sha);
    f.extend(spa.octets());
    f.extend([0; 6]);
    f.extend(target.octets());
    f.resize(60, 0);
    let proto = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: a packet socket, bound to eth0 and sent one frame; sockaddr_ll
    // is plain data; the descriptor is closed at the end.
    unsafe {
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(proto),
        );
        assert!(
            fd >= 0,
            "packet socket: {}",
            std::io::Error::last_os_error()
        );
        let fd = OwnedFd::from_raw_fd(fd);
        let mut sa: libc::sockaddr_ll = std::mem::zeroed();
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = proto;
        sa.sll_ifindex = libc::if_nametoindex(c"eth0".as_ptr()) as i32;
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        let n = libc::sendto(
            fd.as_raw_fd(),
            f.as_ptr().cast(),
            f.len(),
            0,
            (&sa as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        assert_eq!(n, 60, "sendto: {}", std::io::Error::last_os_error());
    }
}

fn nsenter(pid: u32, args: &[&str]) {
    let ok = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(args)
        .status()
        .unwrap()
        .success();
    assert!(ok, "nsenter {args:?}");
}

#[test]
fn machines_cannot_speak_as_one_another() {
    let _g = shared();
    let a = Machine::create(spec("it-spoof-a", Network::Nat));
    let b = Machine::create(spec("it-spoof-b", Network::Nat));
    let ip = |m: &Machine| backend().inspect(&m.id).unwrap().address.unwrap();
    let (ip_a, ip_b) = (ip(&a), ip(&b));
    let mac_a_text = a.ok("cat /sys/class/net/eth0/address");
    let mac_b_text = b.ok("cat /sys/class/net/eth0/address");
    let (mac_a, mac_b) = (parse_mac(&mac_a_text), parse_mac(&mac_b_text));
    let gateway = config().gateway;

    // From inside, a machine can take neither another's address nor its MAC.
    let (code, out) = a.sh(&format!("ip addr add {ip_b}/32 dev eth0 2>&1"));
    assert_ne!(code, 0, "ip addr add worked: {out}");
    let (code, out) = a.sh(&format!("ip link set eth0 address {mac_b_text} 2>&1"));
    assert_ne!(code, 0, "the MAC changed: {out}");

    // A machine that got NET_ADMIN and NET_RAW anyway, played by this test
    // from A's network namespace: nothing it says as B passes its veth.
    let capture = Capture::open(&config().bridge);
    let netns = std::path::PathBuf::from(format!("/proc/{}/ns/net", a.pid));
    in_netns(netns.clone(), move || send_udp(ip_a, gateway, b"fp-before"));
    capture.until(b"fp-before");
    nsenter(
        a.pid,
        &["ip", "addr", "add", &format!("{ip_b}/32"), "dev", "eth0"],
    );
    // ARP requests are told apart from any other machine's by the address
    // they ask for: one nobody has, in the test bridge's own subnet.
    let spoof_target = Ipv4Addr::new(10, 89, 255, 201);
    let own_target = Ipv4Addr::new(10, 89, 255, 202);
    in_netns(netns.clone(), move || {
        send_udp(ip_b, gateway, b"fp-spoof-ip");
        send_arp(mac_a, mac_a, ip_b, spoof_target);
        send_arp(mac_a, mac_b, ip_a, spoof_target);
        send_arp(mac_b, mac_b, ip_b, spoof_target);
    });
    nsenter(
        a.pid,
        &["ip", "link", "set", "eth0", "address", &mac_b_text],
    );
    in_netns(netns.clone(), move || {
        send_udp(ip_a, gateway, b"fp-spoof-mac")
    });
    nsenter(
        a.pid,
        &["ip", "link", "set", "eth0", "address", &mac_a_text],
    );
    in_netns(netns, move || {
        send_arp(mac_a, mac_a, ip_a, own_target);
        send_udp(ip_a, gateway, b"fp-after");
    });
    let frames = capture.until(b"fp-after");
    let arp_for = |f: &[u8], target: Ipv4Addr| {
        f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[38..42] == target.octets()
    };
    for f in &frames {
        let spoofed = f.windows(8).any(|w| w == b"fp-spoof") || arp_for(f, spoof_target);
        assert!(!spoofed, "a spoofed frame passed: {f:02x?}");
    }
    // What A says as itself does pass, ARP included.
    assert!(
        frames.iter().any(|f| arp_for(f, own_target)),
        "A's own ARP did not pass"
    );
}
