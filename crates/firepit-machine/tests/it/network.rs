//! Network isolation: loopback-only machines, and NAT machines that reach
//! neither the host, nor other machines, nor link-local metadata addresses,
//! but do reach "the internet" (a network namespace the test makes); the
//! firewall's drops of private ranges; machines routed each on its own veth;
//! and that no machine speaks as another.

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

    // The host, by the gateway's address and by its loopback.
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
    let inet = Internet::new(1);
    let seen = a.ok(&format!(
        "python3 -c \"import socket\ns=socket.create_connection(('{}', 9000), timeout=2)\nprint(s.recv(100).decode())\"",
        inet.server
    ));
    assert_eq!(seen, inet.host.to_string(), "egress is not masqueraded");
}

/// A network namespace `fpit-inet<n>` at 198.18.`n`.2 (benchmarking range),
/// linked to the host at 198.18.`n`.1 by the veth `fpit-h<n>`, that answers
/// every connection on port 9000 with the peer's address. Each test that
/// makes one has its own `n`, so tests running at once never share one.
struct Internet {
    n: u8,
    host: Ipv4Addr,
    server: Ipv4Addr,
}

impl Internet {
    fn new(n: u8) -> Self {
        let _ = Self::teardown(n);
        let script = format!(
            "set -e
            ip netns add fpit-inet{n}
            ip link add fpit-h{n} type veth peer name fpit-i{n} netns fpit-inet{n}
            ip addr add 198.18.{n}.1/24 dev fpit-h{n}
            ip link set fpit-h{n} up
            ip -n fpit-inet{n} addr add 198.18.{n}.2/24 dev fpit-i{n}
            ip -n fpit-inet{n} link set fpit-i{n} up
            ip -n fpit-inet{n} link set lo up
            ip netns exec fpit-inet{n} python3 -c \"
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('198.18.{n}.2', 9000)); s.listen(8)
while True:
    c, a = s.accept(); c.sendall(a[0].encode()); c.close()
\" >/dev/null 2>&1 &"
        );
        let ok = Command::new("sh")
            .args(["-c", &script])
            .status()
            .unwrap()
            .success();
        assert!(ok, "setting up the stand-in internet failed");
        let inet = Internet {
            n,
            host: Ipv4Addr::new(198, 18, n, 1),
            server: Ipv4Addr::new(198, 18, n, 2),
        };
        // Until its server listens (it answers and closes).
        let deadline = Instant::now() + Duration::from_secs(20);
        let server = std::net::SocketAddr::from((inet.server, 9000));
        while std::net::TcpStream::connect_timeout(&server, Duration::from_secs(1)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the stand-in internet never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        inet
    }

    /// The host's end of the link.
    fn host_if(&self) -> String {
        format!("fpit-h{}", self.n)
    }

    fn teardown(n: u8) -> std::io::Result<std::process::ExitStatus> {
        Command::new("sh")
            .args(["-c", &format!("ip netns pids fpit-inet{n} 2>/dev/null | xargs -r kill -9; ip link del fpit-h{n} 2>/dev/null; ip netns del fpit-inet{n} 2>/dev/null; true")])
            .status()
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        let _ = Self::teardown(self.n);
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
    let veths = format!("iifname \"{VETH_PREFIX}*\"");
    assert!(
        inet.contains(&format!(
            "{veths} ip daddr != @allowed4 ip daddr @blocked4 drop"
        )),
        "{inet}"
    );
    assert!(
        inet.contains(&format!("{veths} ip6 daddr @blocked6 drop")),
        "{inet}"
    );
    // The machine is admitted as its own veth and address, in IP and ARP.
    let addr = backend().inspect(&m.id).unwrap().address.unwrap();
    let slot = u32::from(addr) - u32::from(Ipv4Addr::new(10, 89, 0, 0));
    let veth = format!("{VETH_PREFIX}{slot}");
    let element = format!("\"{veth}\" . {addr}");
    assert!(inet.contains(&element), "{inet}");
    let arp = nft(&["list", "table", "arp", &table]);
    assert!(arp.contains(&element), "{arp}");
    // Routed, not bridged: the host reaches the address down the machine's
    // own veth, which is nobody's bridge port, and the machine holds its
    // address alone (a /32) with the gateway on-link.
    let route = ip(&["route", "get", &addr.to_string()]);
    assert!(route.contains(&format!("dev {veth} ")), "{route}");
    assert!(
        !std::path::Path::new(&format!("/sys/class/net/{veth}/master")).exists(),
        "the veth is a bridge port"
    );
    let neigh = ip(&["neigh", "show", &addr.to_string(), "dev", &veth]);
    assert!(neigh.contains("PERMANENT"), "{neigh}");
    assert_eq!(
        m.ok("ip -4 -o addr show dev eth0 | awk '{print $4}'"),
        format!("{addr}/32")
    );
    assert_eq!(
        m.ok("ip route show default"),
        format!("default via {} dev eth0 onlink", config().gateway)
    );
    // No IPv6 on the host end: nothing the machine says configures the host.
    let v6 = std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{veth}/disable_ipv6"));
    if let Ok(v6) = v6 {
        assert_eq!(v6.trim(), "1");
    }
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Frames on a host interface, both ways, as a packet socket sees them.
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
                "{:?} never arrived",
                String::from_utf8_lossy(marker)
            );
            let mut buf = vec![0u8; 2048];
            // SAFETY: buf is writable for its whole length.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
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
    let ip_of = |m: &Machine| backend().inspect(&m.id).unwrap().address.unwrap();
    let (ip_a, ip_b) = (ip_of(&a), ip_of(&b));
    let veth = |addr: Ipv4Addr| {
        let slot = u32::from(addr) - u32::from(Ipv4Addr::new(10, 89, 0, 0));
        format!("{VETH_PREFIX}{slot}")
    };
    let (veth_a, veth_b) = (veth(ip_a), veth(ip_b));
    let mac_a_text = a.ok("cat /sys/class/net/eth0/address");
    let mac_b_text = b.ok("cat /sys/class/net/eth0/address");
    let mac_a = parse_mac(&mac_a_text);
    let gateway = config().gateway;

    // From inside, a machine can take neither another's address nor its MAC.
    let (code, out) = a.sh(&format!("ip addr add {ip_b}/32 dev eth0 2>&1"));
    assert_ne!(code, 0, "ip addr add worked: {out}");
    let (code, out) = a.sh(&format!("ip link set eth0 address {mac_b_text} 2>&1"));
    assert_ne!(code, 0, "the MAC changed: {out}");

    // A machine that got NET_ADMIN and NET_RAW anyway, played by this test
    // from A's network namespace: nothing it says as B leaves its veth.
    // What passes is seen where it leaves the host, on the stand-in
    // internet's link (masqueraded: told apart by its payload).
    let inet = Internet::new(2);
    let server = inet.server;
    let capture = Capture::open(&inet.host_if());
    let netns = std::path::PathBuf::from(format!("/proc/{}/ns/net", a.pid));
    in_netns(netns.clone(), move || send_udp(ip_a, server, b"fp-before"));
    capture.until(b"fp-before");
    // ARP that claims an address: B's, or one nobody has.
    let made_up = Ipv4Addr::new(10, 89, 255, 201);
    for addr in [ip_b, made_up] {
        nsenter(
            a.pid,
            &["ip", "addr", "add", &format!("{addr}/32"), "dev", "eth0"],
        );
    }
    in_netns(netns.clone(), move || {
        send_udp(ip_b, server, b"fp-spoof-ip");
        send_udp(made_up, server, b"fp-spoof-made-up");
        send_arp(mac_a, mac_a, ip_b, gateway);
        send_arp(mac_a, mac_a, made_up, gateway);
    });
    nsenter(
        a.pid,
        &["ip", "link", "set", "eth0", "address", &mac_b_text],
    );
    // B's MAC is nothing on a link of A's own: A's address passes with it.
    in_netns(netns.clone(), move || {
        send_udp(ip_a, server, b"fp-own-ip-other-mac")
    });
    nsenter(
        a.pid,
        &["ip", "link", "set", "eth0", "address", &mac_a_text],
    );
    in_netns(netns, move || {
        send_arp(mac_a, mac_a, ip_a, gateway);
        send_udp(ip_a, server, b"fp-after");
    });
    let frames = capture.until(b"fp-after");
    for f in &frames {
        let spoofed = f.windows(8).any(|w| w == b"fp-spoof");
        assert!(!spoofed, "a spoofed packet passed: {f:02x?}");
    }
    assert!(
        frames
            .iter()
            .any(|f| f.windows(19).any(|w| w == b"fp-own-ip-other-mac")),
        "A's own address did not pass"
    );
    // The host learnt nothing from the ARP that claimed other addresses:
    // it reaches B down B's veth alone, and made-up addresses nowhere.
    let on_a = ip(&["neigh", "show", "dev", &veth_a]);
    assert!(!on_a.contains(&format!("{ip_b} ")), "{on_a}");
    assert!(!on_a.contains(&format!("{made_up} ")), "{on_a}");
    let route = ip(&["route", "get", &ip_b.to_string()]);
    assert!(route.contains(&format!("dev {veth_b} ")), "{route}");
    let neigh_b = ip(&["neigh", "show", &ip_b.to_string(), "dev", &veth_b]);
    assert!(
        neigh_b.contains(&mac_b_text) && neigh_b.contains("PERMANENT"),
        "{neigh_b}"
    );
}
