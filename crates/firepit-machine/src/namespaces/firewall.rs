//! The host-wide network of the namespaces backend, set up once when the
//! backend starts: IPv4 forwarding and two nftables tables named after the
//! backend (`firepit` by default), one of family `inet` and one of family
//! `arp`.
//!
//! Machines are **routed**, not bridged: each machine's veth is a
//! point-to-point link of its own. The host end carries the gateway address
//! as a `/32` (the same address on every host end), a `/32` route to the
//! machine's address and a permanent neighbour entry for it; the machine's
//! `eth0` has its address as a `/32` and a default route through the gateway
//! (on-link). So the host holds as many machines as it has addresses in the
//! subnet (a Linux bridge takes at most 1024 ports), every machine is pinned
//! to its own address by the host's routing (a packet for an address goes
//! down that address's veth only), and nothing a machine does to its own
//! link (another address, another MAC, ARP that claims another's address)
//! reaches any other machine: there is no shared segment.
//!
//! `inet` table: in `prerouting` (before connection tracking) a packet from
//! a machine's veth (the backend's veth prefix) passes only if it is IPv4
//! and its source address is that veth's machine's, looked up in the set
//! `machines` (`ifname . ipv4_addr`): no machine can speak as another, and
//! no IPv6 (router advertisements to the host among it) gets past its veth.
//! Machines' egress is masqueraded; traffic from machines to the host itself
//! is dropped (except replies, and DNS to a resolver that is a host
//! address); machine-to-machine forwarding is dropped, and so are
//! destinations no machine has business with ([`BLOCKED4`], [`BLOCKED6`]:
//! private, shared (CGNAT), link-local and cloud-fabric addresses, multicast
//! and reserved ranges, IPv6 unique-local and link-local) unless the
//! operator opened a range (`firepit up --allow-net CIDR`), or the packet is
//! DNS to a resolver the machines are given. Machines have no IPv6 egress
//! at all; [`BLOCKED6`] is there so that IPv6 egress, once added, starts
//! closed to them too.
//!
//! `arp` table: an ARP packet from a machine's veth reaches the host only
//! if its sender address is that veth's machine's (the same `machines` set,
//! in this table): a machine cannot fill the host's neighbour table with
//! addresses it made up.
//!
//! Every rule is one per backend, never one per machine: machines differ
//! only in their elements of the two `machines` sets. A slot's element never
//! changes (the veth's name and the address both follow from the slot), so
//! the launcher adds it when it starts the machine ([`admit`], one netlink
//! batch), setup writes those of every allocated slot, and one left by a
//! destroyed machine admits nothing but the next machine of that slot.
//!
//! One `nft -f` replaces the tables' chains and other sets atomically and
//! keeps the `machines` sets (and the elements the launchers of a backend
//! still running on the same tables added), so setup is idempotent and
//! running machines keep their elements. The bridge and the `bridge` table
//! of earlier versions, which put machines on one bridge, are removed.

use std::fmt;
use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::str::FromStr;

use super::netlink::{NFPROTO_ARP, NFPROTO_INET, Netlink, Nftables};
use crate::Error;

/// IPv4 destinations machines never reach unless opened: "this network",
/// private (RFC 1918), shared address space (CGNAT, RFC 6598; Alibaba's
/// metadata address 100.100.100.200 among them), link-local (cloud metadata
/// 169.254.169.254 among them), Azure's fabric address, multicast, and the
/// reserved block with the limited broadcast address.
pub(crate) const BLOCKED4: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "168.63.129.16",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

/// IPv6 destinations machines never reach: unique-local, link-local and
/// multicast.
pub(crate) const BLOCKED6: &[&str] = &["fc00::/7", "fe80::/10", "ff00::/8"];

/// The set of machines' (veth, address) in the `inet` and `arp` tables.
/// Setup keeps it (and the elements the launchers of a backend still
/// running on the same tables added); a change of its type needs a new name.
pub(crate) const MACHINES_SET: &str = "machines";
const MACHINES_TYPE: &str = "ifname . ipv4_addr";

/// An IPv4 range, `a.b.c.d/len` (a bare address is a /32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// The range's first address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl FromStr for Ipv4Net {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::InvalidNet(format!("{s:?}: {why}"));
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        if addr.parse::<std::net::Ipv6Addr>().is_ok() {
            return Err(bad(
                "only IPv4 ranges can be opened: machines have no IPv6 egress",
            ));
        }
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| bad("not an IPv4 range like 10.1.0.0/16"))?;
        let prefix = match prefix {
            None => 32,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= 32 => p,
                _ => return Err(bad("the prefix length must be 0 to 32")),
            },
        };
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        if u32::from(addr) & !mask != 0 {
            return Err(bad(&format!(
                "host bits are set; the range is {}/{prefix}",
                Ipv4Addr::from(u32::from(addr) & mask)
            )));
        }
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The backend's network layout.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub table: String,
    /// The bridge of earlier versions, removed at setup.
    pub bridge: String,
    pub gateway: Ipv4Addr,
    pub prefix: u8,
    /// Host ends of veths are this plus the slot.
    pub veth_prefix: String,
    /// Ranges opened to machines in spite of [`BLOCKED4`].
    pub allow: Vec<Ipv4Net>,
}

impl Layout {
    /// The subnet, e.g. `10.88.0.0/16`.
    pub(crate) fn subnet(&self) -> String {
        let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
        format!(
            "{}/{}",
            Ipv4Addr::from(u32::from(self.gateway) & mask),
            self.prefix
        )
    }

    /// The address of pool slot `index` (2.. upwards).
    pub(crate) fn address(&self, index: u32) -> Ipv4Addr {
        let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
        Ipv4Addr::from((u32::from(self.gateway) & mask) + index)
    }

    /// How many slots the pool has (network, gateway and broadcast excluded).
    pub(crate) fn slots(&self) -> u32 {
        (1u32 << (32 - self.prefix as u32)) - 1
    }

    /// The host end of slot `index`'s veth.
    pub(crate) fn veth(&self, index: u32) -> String {
        format!("{}{index}", self.veth_prefix)
    }
}

/// The MAC address firepit gives the interface at `addr` (a machine's
/// `eth0`; the host end of every veth, at the gateway's address): locally
/// administered, unicast, `02:66` and the address.
pub(crate) fn mac_of(addr: Ipv4Addr) -> [u8; 6] {
    let o = addr.octets();
    [0x02, 0x66, o[0], o[1], o[2], o[3]]
}

/// The key of a `machines` element as nftables stores it: the interface
/// name padded to `IFNAMSIZ`, then the address.
fn element_key(veth: &str, addr: Ipv4Addr) -> Vec<u8> {
    let mut key = vec![0u8; 16 + 4];
    key[..veth.len().min(15)].copy_from_slice(&veth.as_bytes()[..veth.len().min(15)]);
    key[16..20].copy_from_slice(&addr.octets());
    key
}

/// Lets the machine behind `veth` speak as `addr` (and nothing else): adds
/// its element to the `machines` sets of both tables, in one batch.
pub(crate) fn admit(table: &str, veth: &str, addr: Ipv4Addr) -> Result<(), Error> {
    let key = element_key(veth, addr);
    Nftables::open()?.add_set_elements(&[
        (NFPROTO_INET, table, MACHINES_SET, &key),
        (NFPROTO_ARP, table, MACHINES_SET, &key),
    ])
}

/// What the ruleset depends on besides the layout.
#[derive(Debug, Default)]
pub(crate) struct Hosts {
    /// Resolvers machines use that are host addresses (reached through the
    /// input chain).
    pub local_resolvers: Vec<Ipv4Addr>,
    /// Resolvers machines use that are elsewhere (reached through the
    /// forward chain, whatever range they are in).
    pub remote_resolvers: Vec<Ipv4Addr>,
    /// Address slots in use, whose elements the bridge table gets.
    pub slots: Vec<u32>,
}

fn list<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The script lines that make `table` of `family` hold exactly what
/// follows them: the table and its `machines` set are made if missing (and
/// kept), every chain and other set of `chains` and `sets` is emptied and
/// deleted, to be made anew by the definition that follows.
fn replace_in(family: &str, table: &str, chains: &[&str], sets: &[(&str, &str)]) -> String {
    let mut out = format!(
        "table {family} {table} {{\n  set {MACHINES_SET} {{ type {MACHINES_TYPE}; }}\n}}\n"
    );
    for c in chains {
        out.push_str(&format!(
            "add chain {family} {table} {c}\nflush chain {family} {table} {c}\ndelete chain {family} {table} {c}\n"
        ));
    }
    for (set, ty) in sets {
        out.push_str(&format!(
            "add set {family} {table} {set} {{ {ty}; }}\ndelete set {family} {table} {set}\n"
        ));
    }
    out
}

/// The nftables script for `layout`.
pub(crate) fn ruleset(layout: &Layout, hosts: &Hosts) -> String {
    let table = &layout.table;
    let subnet = layout.subnet();
    let veths = format!("\"{}*\"", layout.veth_prefix);
    let mut dns = String::new();
    for r in &hosts.local_resolvers {
        dns.push_str(&format!(
            "    iifname {veths} ip daddr {r} udp dport 53 accept\n    iifname {veths} ip daddr {r} tcp dport 53 accept\n"
        ));
    }
    let mut remote_dns = String::new();
    if !hosts.remote_resolvers.is_empty() {
        let r = list(&hosts.remote_resolvers);
        remote_dns = format!(
            "    iifname {veths} ip daddr {{ {r} }} udp dport 53 accept\n    iifname {veths} ip daddr {{ {r} }} tcp dport 53 accept\n"
        );
    }
    let allowed = if layout.allow.is_empty() {
        String::new()
    } else {
        format!("elements = {{ {} }}", list(&layout.allow))
    };
    let elements = if hosts.slots.is_empty() {
        String::new()
    } else {
        let e = hosts
            .slots
            .iter()
            .map(|&s| format!("\"{}\" . {}", layout.veth(s), layout.address(s)));
        format!("elements = {{ {} }}", list(e))
    };
    let blocked4 = BLOCKED4.join(", ");
    let blocked6 = BLOCKED6.join(", ");
    let interval4 = "type ipv4_addr; flags interval";
    let interval6 = "type ipv6_addr; flags interval";
    let mut out = replace_in(
        "inet",
        table,
        &["prerouting", "input", "forward", "postrouting"],
        &[
            ("blocked4", interval4),
            ("allowed4", interval4),
            ("blocked6", interval6),
        ],
    );
    out.push_str(&replace_in("arp", table, &["input"], &[]));
    // Earlier versions' bridge table.
    out.push_str(&format!(
        "table bridge {table}\ndelete table bridge {table}\n"
    ));
    out.push_str(&format!(
        "table inet {table} {{\n\
         \x20 set {MACHINES_SET} {{ type {MACHINES_TYPE}; {elements} }}\n\
         \x20 set blocked4 {{ {interval4}; elements = {{ {blocked4} }}; }}\n\
         \x20 set allowed4 {{ {interval4}; auto-merge; {allowed} }}\n\
         \x20 set blocked6 {{ {interval6}; elements = {{ {blocked6} }}; }}\n\
         \x20 chain prerouting {{\n\
         \x20   type filter hook prerouting priority raw; policy accept;\n\
         \x20   iifname != {veths} accept\n\
         \x20   meta nfproto != ipv4 drop\n\
         \x20   iifname . ip saddr != @{MACHINES_SET} drop\n\
         \x20 }}\n\
         \x20 chain input {{\n\
         \x20   type filter hook input priority filter - 10; policy accept;\n\
         \x20   iifname {veths} ct state established,related accept\n\
         {dns}\
         \x20   iifname {veths} drop\n\
         \x20 }}\n\
         \x20 chain forward {{\n\
         \x20   type filter hook forward priority filter - 10; policy accept;\n\
         \x20   iifname {veths} oifname {veths} drop\n\
         \x20   iifname {veths} ip saddr != {subnet} drop\n\
         {remote_dns}\
         \x20   iifname {veths} ip daddr != @allowed4 ip daddr @blocked4 drop\n\
         \x20   iifname {veths} ip6 daddr @blocked6 drop\n\
         \x20   iifname {veths} meta nfproto ipv6 drop\n\
         \x20 }}\n\
         \x20 chain postrouting {{\n\
         \x20   type nat hook postrouting priority srcnat; policy accept;\n\
         \x20   ip saddr {subnet} oifname != {veths} masquerade\n\
         \x20 }}\n\
         }}\n\
         table arp {table} {{\n\
         \x20 set {MACHINES_SET} {{ type {MACHINES_TYPE}; {elements} }}\n\
         \x20 chain input {{\n\
         \x20   type filter hook input priority filter; policy accept;\n\
         \x20   iifname != {veths} accept\n\
         \x20   iifname . arp saddr ip @{MACHINES_SET} accept\n\
         \x20   drop\n\
         \x20 }}\n\
         }}\n"
    ));
    out
}

/// The host's addresses.
fn host_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills head with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family we check first.
            unsafe {
                if (*ifa.ifa_addr).sa_family as i32 == libc::AF_INET {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        sin.sin_addr.s_addr,
                    ))));
                }
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: head came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// The nameservers in a resolv.conf.
pub(crate) fn nameservers(resolv_conf: &str) -> Vec<IpAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Removes the bridge of earlier versions, turns forwarding on and installs
/// the ruleset, with the elements of the address slots in `slots`.
pub(crate) fn setup(layout: &Layout, slots: Vec<u32>) -> Result<(), Error> {
    Netlink::open()?.delete_bridge(&layout.bridge)?;
    fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(Error::io(
        "enabling forwarding",
        "/proc/sys/net/ipv4/ip_forward",
    ))?;
    let machines_resolv = super::resolv_conf();
    let host = host_addresses();
    let mut hosts = Hosts {
        slots,
        ..Hosts::default()
    };
    for a in nameservers(&machines_resolv) {
        match a {
            IpAddr::V4(v4) if v4.is_loopback() => {}
            IpAddr::V4(v4) if host.contains(&a) => hosts.local_resolvers.push(v4),
            IpAddr::V4(v4) => hosts.remote_resolvers.push(v4),
            IpAddr::V6(_) => {}
        }
    }
    let script = ruleset(layout, &hosts);
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Firewall(format!("running nft: {e}")))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| Error::Firewall(format!("writing to nft: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Firewall(format!("running nft: {e}")))?;
    if !out.status.success() {
        return Err(Error::Firewall(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            table: "firepit".into(),
            bridge: "fpbr0".into(),
            gateway: Ipv4Addr::new(10, 88, 0, 1),
            prefix: 16,
            veth_prefix: "fpv".into(),
            allow: vec![],
        }
    }

    #[test]
    fn pool() {
        let l = layout();
        assert_eq!(l.subnet(), "10.88.0.0/16");
        assert_eq!(l.address(2), Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(l.address(258), Ipv4Addr::new(10, 88, 1, 2));
        assert_eq!(l.slots(), 65535);
        assert_eq!(l.veth(258), "fpv258");
    }

    #[test]
    fn rules() {
        let hosts = Hosts {
            local_resolvers: vec![Ipv4Addr::new(192, 168, 1, 1)],
            remote_resolvers: vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(168, 63, 129, 16)],
            slots: vec![2, 300],
        };
        let r = ruleset(&layout(), &hosts);
        assert!(r.contains("ip saddr 10.88.0.0/16 oifname != \"fpv*\" masquerade"));
        assert!(r.contains("iifname \"fpv*\" oifname \"fpv*\" drop"));
        for range in [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
            "168.63.129.16",
            "169.254.0.0/16",
            "fc00::/7",
            "fe80::/10",
        ] {
            assert!(r.contains(range), "{range} is not blocked");
        }
        assert!(r.contains("set allowed4 { type ipv4_addr; flags interval; auto-merge;  }"));
        let local = r
            .find("iifname \"fpv*\" ip daddr 192.168.1.1 udp dport 53 accept")
            .unwrap();
        assert!(local < r.find("iifname \"fpv*\" drop").unwrap());
        // DNS to the machines' resolvers passes before the private ranges drop.
        let remote = r
            .find("ip daddr { 10.0.0.2, 168.63.129.16 } udp dport 53 accept")
            .unwrap();
        let block = r.find("ip daddr @blocked4 drop").unwrap();
        assert!(remote < block);
        assert!(r.find("ip saddr != 10.88.0.0/16 drop").unwrap() < remote);
        // Each allocated slot's veth may speak as its own address only, in
        // IP (before conntrack) and in ARP; nothing but IPv4 passes a veth.
        let elements = "elements = { \"fpv2\" . 10.88.0.2, \"fpv300\" . 10.88.1.44 }";
        assert_eq!(r.matches(elements).count(), 2, "{r}");
        assert!(r.contains("type filter hook prerouting priority raw; policy accept;"));
        let pre = r.find("chain prerouting {").unwrap();
        let pre = &r[pre..pre + r[pre..].find("}").unwrap()];
        assert!(pre.contains("iifname != \"fpv*\" accept"), "{pre}");
        assert!(pre.contains("meta nfproto != ipv4 drop"), "{pre}");
        assert!(
            pre.contains("iifname . ip saddr != @machines drop"),
            "{pre}"
        );
        assert!(r.contains("iifname . arp saddr ip @machines accept"));
        // One rule per backend, none per machine: the slots are elements.
        let without = ruleset(
            &layout(),
            &Hosts {
                slots: vec![],
                ..hosts
            },
        );
        assert_eq!(r.lines().count(), without.lines().count());
    }

    #[test]
    fn opened_ranges_go_into_the_allowed_set() {
        let mut l = layout();
        // Overlaps and repeats are merged by nft (auto-merge), not refused.
        l.allow = ["10.1.0.0/16", "192.168.5.7", "10.0.0.0/8", "10.1.0.0/16"]
            .map(|n| n.parse().unwrap())
            .to_vec();
        let r = ruleset(&l, &Hosts::default());
        assert!(
            r.contains(
                "set allowed4 { type ipv4_addr; flags interval; auto-merge; \
                 elements = { 10.1.0.0/16, 192.168.5.7/32, 10.0.0.0/8, 10.1.0.0/16 } }"
            ),
            "{r}"
        );
        assert!(r.contains("set machines { type ifname . ipv4_addr;  }"));
        // The sets of machines are added to, never deleted: elements that
        // launchers of another backend on the same tables added stay.
        assert!(!r.contains("delete table inet"));
        assert!(!r.contains("delete table arp"));
        assert!(!r.contains("delete set inet firepit machines"));
        assert!(r.contains("delete chain inet firepit prerouting"));
        assert!(r.contains("delete chain arp firepit input"));
        assert!(r.contains("delete set inet firepit allowed4"));
        // Earlier versions' bridge table goes.
        assert!(r.contains("delete table bridge firepit"));
    }

    #[test]
    fn ranges_parse_strictly() {
        let n: Ipv4Net = "10.1.0.0/16".parse().unwrap();
        assert_eq!((n.addr(), n.prefix()), (Ipv4Addr::new(10, 1, 0, 0), 16));
        assert_eq!(
            "1.2.3.4".parse::<Ipv4Net>().unwrap().to_string(),
            "1.2.3.4/32"
        );
        assert_eq!("0.0.0.0/0".parse::<Ipv4Net>().unwrap().prefix(), 0);
        for (bad, why) in [
            ("10.1.2.3/8", "the range is 10.0.0.0/8"),
            ("10.0.0.0/33", "0 to 32"),
            ("10.0.0.0/x", "0 to 32"),
            ("fc00::/7", "IPv6"),
            ("example.com", "not an IPv4 range"),
            ("", "not an IPv4 range"),
        ] {
            let e = bad.parse::<Ipv4Net>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn element_keys_are_padded_fields() {
        let addr = Ipv4Addr::new(10, 88, 1, 44);
        assert_eq!(mac_of(addr), [0x02, 0x66, 10, 88, 1, 44]);
        let key = element_key("fpv300", addr);
        assert_eq!(key.len(), 20);
        assert_eq!(&key[..7], b"fpv300\0");
        assert_eq!(&key[16..], &[10, 88, 1, 44]);
        // A name too long for an interface is cut, never overflows.
        assert_eq!(
            &element_key("a-very-long-interface", addr)[15..17],
            &[0, 10]
        );
    }

    #[test]
    fn parses_nameservers() {
        let ns = nameservers("# x\nnameserver 10.0.0.2\nnameserver ::1\nsearch lan\n");
        assert_eq!(
            ns,
            vec![
                "10.0.0.2".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
    }
}
