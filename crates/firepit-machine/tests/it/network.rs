//! Network isolation: loopback-only machines, and NAT machines that reach
//! neither the host, nor other machines, nor link-local metadata addresses,
//! but do reach "the internet" (a network namespace this test makes).

use std::net::TcpListener;
use std::process::Command;

use firepit_machine::{Backend, Network};

use crate::harness::{Machine, backend, shared, spec};

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
    b.ok("(python3 -m http.server 8000 >/dev/null 2>&1 &); sleep 0.5");
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
\" >/dev/null 2>&1 &
            sleep 0.5";
        let ok = Command::new("sh")
            .args(["-c", script])
            .status()
            .unwrap()
            .success();
        assert!(ok, "setting up the stand-in internet failed");
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
