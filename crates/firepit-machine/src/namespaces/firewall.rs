//! The host-wide network of the namespaces backend, set up once when the
//! backend starts: the bridge with the gateway address, IPv4 forwarding, and
//! the nftables table (`inet firepit` by default).
//!
//! Rules: machines' egress is masqueraded; traffic from machines to the host
//! itself is dropped (except replies, and DNS to a resolver that is a host
//! address); bridge-to-bridge forwarding and link-local/metadata destinations
//! are dropped. The table is replaced atomically, so setup is idempotent.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};

use super::netlink::Netlink;
use crate::Error;

/// Destinations machines never reach: link-local (cloud metadata among them),
/// and other well-known metadata addresses.
const BLOCKED: &str = "169.254.0.0/16, 100.100.100.200, 0.0.0.0/8, 224.0.0.0/4, 240.0.0.0/4";

/// The backend's network layout.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub table: String,
    pub bridge: String,
    pub gateway: Ipv4Addr,
    pub prefix: u8,
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
}

/// The nftables script for `layout`, given the host's resolvers that are
/// host addresses.
pub(crate) fn ruleset(layout: &Layout, local_resolvers: &[Ipv4Addr]) -> String {
    let br = &layout.bridge;
    let table = &layout.table;
    let subnet = layout.subnet();
    let mut dns = String::new();
    for r in local_resolvers {
        dns.push_str(&format!(
            "    iifname \"{br}\" ip daddr {r} udp dport 53 accept\n    iifname \"{br}\" ip daddr {r} tcp dport 53 accept\n"
        ));
    }
    format!(
        "table inet {table}\n\
         delete table inet {table}\n\
         table inet {table} {{\n\
         \x20 chain input {{\n\
         \x20   type filter hook input priority filter - 10; policy accept;\n\
         \x20   iifname \"{br}\" ct state established,related accept\n\
         {dns}\
         \x20   iifname \"{br}\" drop\n\
         \x20 }}\n\
         \x20 chain forward {{\n\
         \x20   type filter hook forward priority filter - 10; policy accept;\n\
         \x20   iifname \"{br}\" oifname \"{br}\" drop\n\
         \x20   iifname \"{br}\" ip daddr {{ {BLOCKED} }} drop\n\
         \x20   iifname \"{br}\" meta nfproto ipv6 drop\n\
         \x20   iifname \"{br}\" ip saddr != {subnet} drop\n\
         \x20 }}\n\
         \x20 chain postrouting {{\n\
         \x20   type nat hook postrouting priority srcnat; policy accept;\n\
         \x20   ip saddr {subnet} oifname != \"{br}\" masquerade\n\
         \x20 }}\n\
         }}\n"
    )
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

/// Creates the bridge, turns forwarding on and installs the ruleset.
pub(crate) fn setup(layout: &Layout) -> Result<(), Error> {
    let nl = Netlink::open()?;
    nl.ensure_bridge(&layout.bridge, layout.gateway, layout.prefix)?;
    fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(Error::io(
        "enabling forwarding",
        "/proc/sys/net/ipv4/ip_forward",
    ))?;
    let resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let host = host_addresses();
    let local: Vec<Ipv4Addr> = nameservers(&resolv)
        .into_iter()
        .filter(|a| host.contains(a))
        .filter_map(|a| match a {
            IpAddr::V4(v4) if !v4.is_loopback() => Some(v4),
            _ => None,
        })
        .collect();
    let script = ruleset(layout, &local);
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
        }
    }

    #[test]
    fn pool() {
        let l = layout();
        assert_eq!(l.subnet(), "10.88.0.0/16");
        assert_eq!(l.address(2), Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(l.address(258), Ipv4Addr::new(10, 88, 1, 2));
        assert_eq!(l.slots(), 65535);
    }

    #[test]
    fn rules() {
        let r = ruleset(&layout(), &[Ipv4Addr::new(192, 168, 1, 1)]);
        assert!(r.contains("ip saddr 10.88.0.0/16 oifname != \"fpbr0\" masquerade"));
        assert!(r.contains("iifname \"fpbr0\" oifname \"fpbr0\" drop"));
        assert!(r.contains("169.254.0.0/16"));
        let dns = r.find("ip daddr 192.168.1.1 udp dport 53 accept").unwrap();
        assert!(dns < r.find("iifname \"fpbr0\" drop").unwrap());
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
