//! A minimal synchronous rtnetlink client: just the requests machines need
//! (veth with its peer in a namespace, addresses, routes, a permanent
//! neighbour, link up/delete), and one nftables request (adding elements to
//! sets, [`Nftables`]). Hand-written because the requests are
//! few and the launcher must stay synchronous and single-threaded.
//!
//! A message is a `nlmsghdr`, a fixed family header (`ifinfomsg`,
//! `ifaddrmsg` or `rtmsg`) and attributes (`len: u16, type: u16`, payload,
//! padded to 4 bytes); nested attributes carry attributes as payload. Every
//! request asks for an ACK, whose `nlmsgerr.error` is 0 or `-errno`.
//!
//! nftables speaks nfnetlink: changes go in a batch (`NFNL_MSG_BATCH_BEGIN`,
//! the requests, `NFNL_MSG_BATCH_END`) sent as one datagram and applied as
//! one transaction; each request carries an `nfgenmsg` header (family,
//! version, resource id) and is answered like an rtnetlink one.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::Error;

const NLA_F_NESTED: u16 = 0x8000;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_PID: u16 = 19;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_DST: u16 = 1;
const RTA_GATEWAY: u16 = 5;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const IFINFOMSG_LEN: usize = 16;
const NETLINK_NETFILTER: i32 = 12;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;
/// `NFPROTO_INET`.
pub(crate) const NFPROTO_INET: u8 = 1;
/// `NFPROTO_ARP`.
pub(crate) const NFPROTO_ARP: u8 = 3;

/// A request being built.
struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    /// A request that asks for an ACK.
    fn new(ty: u16, flags: u16, header: &[u8]) -> Self {
        Self::with(ty, flags | libc::NLM_F_ACK as u16, 1, header)
    }

    /// A request with exactly these flags (besides `NLM_F_REQUEST`) and
    /// sequence number.
    fn with(ty: u16, flags: u16, seq: u32, header: &[u8]) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set in finish
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
        buf.extend_from_slice(header);
        Self {
            buf,
            nests: Vec::new(),
        }
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        self.buf
            .extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    fn str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        self.attr(ty, &data)
    }

    fn u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_ne_bytes())
    }

    fn begin(&mut self, ty: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.attr(ty | NLA_F_NESTED, &[])
    }

    fn raw(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    fn end(&mut self) -> &mut Self {
        let start = self.nests.pop().expect("end() matches begin()");
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

fn ifinfomsg(family: u8, index: i32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut h = [0u8; IFINFOMSG_LEN];
    h[0] = family;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

/// A netlink route socket in the caller's network namespace.
pub(crate) struct Netlink {
    fd: OwnedFd,
}

impl Netlink {
    /// Opens a socket.
    pub(crate) fn open() -> Result<Self, Error> {
        Ok(Self {
            fd: socket(libc::NETLINK_ROUTE)?,
        })
    }

    fn request(&self, what: &'static str, msg: Msg) -> Result<(), Error> {
        send_and_ack(&self.fd, what, &msg.finish())
    }

    /// Deletes the link `name` if it is a bridge (the one earlier versions
    /// put machines on); anything else of that name is left alone.
    pub(crate) fn delete_bridge(&self, name: &str) -> Result<(), Error> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Ok(());
        }
        if std::path::Path::new("/sys/class/net")
            .join(name)
            .join("bridge")
            .exists()
        {
            self.delete_link(name)?;
        }
        Ok(())
    }

    /// Adds an IPv4 address to a link; an existing one is fine.
    pub(crate) fn add_address(&self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), Error> {
        let mut h = [0u8; 8];
        h[0] = libc::AF_INET as u8;
        h[1] = prefix;
        h[4..8].copy_from_slice(&index.to_ne_bytes());
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_REPLACE) as u16;
        let mut m = Msg::new(libc::RTM_NEWADDR, flags, &h);
        m.attr(IFA_LOCAL, &addr.octets())
            .attr(IFA_ADDRESS, &addr.octets());
        self.request("adding an address", m)
    }

    /// Creates a veth pair: `host` on the host, up, with MAC address
    /// `host_mac`; its peer `peer`, with MAC address `peer_mac`, in the
    /// network namespace of process `pid`.
    pub(crate) fn create_veth(
        &self,
        host: &str,
        host_mac: [u8; 6],
        peer: &str,
        peer_mac: [u8; 6],
        pid: i32,
    ) -> Result<(), Error> {
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        let up = libc::IFF_UP as u32;
        let mut m = Msg::new(libc::RTM_NEWLINK, flags, &ifinfomsg(0, 0, up, up));
        m.str(IFLA_IFNAME, host)
            .attr(IFLA_ADDRESS, &host_mac)
            .begin(IFLA_LINKINFO)
            .str(IFLA_INFO_KIND, "veth")
            .begin(IFLA_INFO_DATA)
            .begin(VETH_INFO_PEER)
            .raw(&ifinfomsg(0, 0, 0, 0))
            .str(IFLA_IFNAME, peer)
            .attr(IFLA_ADDRESS, &peer_mac)
            .u32(IFLA_NET_NS_PID, pid as u32)
            .end()
            .end()
            .end();
        self.request("creating a veth pair", m)
    }

    /// Routes `dst/32` to link `index` (on-link, no gateway).
    pub(crate) fn add_host_route(&self, index: u32, dst: Ipv4Addr) -> Result<(), Error> {
        let mut h = rtmsg(RT_SCOPE_LINK);
        h[1] = 32;
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_REPLACE) as u16;
        let mut m = Msg::new(libc::RTM_NEWROUTE, flags, &h);
        m.attr(RTA_DST, &dst.octets()).u32(RTA_OIF, index);
        self.request("adding a route to the machine", m)
    }

    /// Sets `addr` on link `index` to be `mac`, for good (no ARP).
    pub(crate) fn add_neighbour(
        &self,
        index: u32,
        addr: Ipv4Addr,
        mac: [u8; 6],
    ) -> Result<(), Error> {
        // ndmsg: family, pad x3, ifindex (i32), state (u16), flags, type
        let mut h = [0u8; 12];
        h[0] = libc::AF_INET as u8;
        h[4..8].copy_from_slice(&(index as i32).to_ne_bytes());
        h[8..10].copy_from_slice(&libc::NUD_PERMANENT.to_ne_bytes());
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_REPLACE) as u16;
        let mut m = Msg::new(libc::RTM_NEWNEIGH, flags, &h);
        m.attr(NDA_DST, &addr.octets()).attr(NDA_LLADDR, &mac);
        self.request("adding the machine's neighbour entry", m)
    }

    /// Brings a link up.
    pub(crate) fn link_up(&self, index: u32) -> Result<(), Error> {
        let up = libc::IFF_UP as u32;
        let m = Msg::new(libc::RTM_NEWLINK, 0, &ifinfomsg(0, index as i32, up, up));
        self.request("bringing a link up", m)
    }

    /// Deletes a link by name; a missing one is fine.
    pub(crate) fn delete_link(&self, name: &str) -> Result<(), Error> {
        let mut m = Msg::new(libc::RTM_DELLINK, 0, &ifinfomsg(0, 0, 0, 0));
        m.str(IFLA_IFNAME, name);
        match self.request("deleting a link", m) {
            Err(Error::Netlink { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => {
                Ok(())
            }
            r => r,
        }
    }

    /// Adds a default route through `gateway` on link `index`, on-link (the
    /// link's own address is a `/32`, so no prefix covers the gateway).
    pub(crate) fn add_default_route(&self, index: u32, gateway: Ipv4Addr) -> Result<(), Error> {
        let mut h = rtmsg(libc::RT_SCOPE_UNIVERSE);
        h[8..12].copy_from_slice(&RTNH_F_ONLINK.to_ne_bytes());
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        let mut m = Msg::new(libc::RTM_NEWROUTE, flags, &h);
        m.attr(RTA_GATEWAY, &gateway.octets()).u32(RTA_OIF, index);
        self.request("adding the default route", m)
    }
}

/// `RT_SCOPE_LINK`.
const RT_SCOPE_LINK: u8 = 253;
/// `RTNH_F_ONLINK`: the gateway is on the link whatever its addresses say.
const RTNH_F_ONLINK: u32 = 4;

/// An `rtmsg` for a unicast route of the main table with `scope`:
/// family, dst_len, src_len, tos, table, protocol, scope, type, flags (u32).
fn rtmsg(scope: u8) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = libc::AF_INET as u8;
    h[4] = libc::RT_TABLE_MAIN;
    h[5] = libc::RTPROT_BOOT;
    h[6] = scope;
    h[7] = libc::RTN_UNICAST;
    h
}

/// Opens a netlink socket of `protocol`.
fn socket(protocol: i32) -> Result<OwnedFd, Error> {
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        return Err(Error::sys("opening a netlink socket")(
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends `msg` (one datagram, one or more messages of which one asks for an
/// ACK) and waits for the first answer: the ACK (`Ok`) or an error.
fn send_and_ack(fd: &OwnedFd, what: &'static str, msg: &[u8]) -> Result<(), Error> {
    let err = |source| Error::Netlink { what, source };
    // SAFETY: the buffer is valid for its length; the kernel copies it.
    let n = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if n < 0 {
        return Err(err(io::Error::last_os_error()));
    }
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: buf is writable for its whole length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err(e));
        }
        let n = n as usize;
        let mut off = 0;
        while off + 16 <= n {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
            if ty == libc::NLMSG_ERROR as u16 && off + 20 <= n {
                let code = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().unwrap());
                return if code == 0 {
                    Ok(())
                } else {
                    Err(err(io::Error::from_raw_os_error(-code)))
                };
            }
            if len < 16 {
                break;
            }
            off += (len + 3) & !3;
        }
    }
}

/// An nfnetlink socket for nftables requests, in the caller's network
/// namespace.
pub(crate) struct Nftables {
    fd: OwnedFd,
}

impl Nftables {
    /// Opens a socket.
    pub(crate) fn open() -> Result<Self, Error> {
        Ok(Self {
            fd: socket(NETLINK_NETFILTER)?,
        })
    }

    /// Adds elements to sets, in one batch (one transaction): each is
    /// `(family, table, set, key)`, `key` the bytes of the element's key
    /// (each field of a concatenation padded to 4 bytes). An element that is
    /// there already is fine.
    pub(crate) fn add_set_elements(
        &self,
        elements: &[(u8, &str, &str, &[u8])],
    ) -> Result<(), Error> {
        self.send_batch(
            "adding firewall set elements",
            &add_set_elements_batch(elements),
        )
    }

    fn send_batch(&self, what: &'static str, batch: &[u8]) -> Result<(), Error> {
        send_and_ack(&self.fd, what, batch)
    }
}

/// `nfgenmsg`: family, version 0, resource id (big-endian).
fn nfgenmsg(family: u8, res_id: u16) -> [u8; 4] {
    let id = res_id.to_be_bytes();
    [family, 0, id[0], id[1]]
}

/// The batch that adds elements to sets: begin, one `NEWSETELEM` per
/// element (only the last asks for an ACK: the kernel answers the batch's
/// first error, or that ACK once all applied), end.
fn add_set_elements_batch(elements: &[(u8, &str, &str, &[u8])]) -> Vec<u8> {
    let subsys = nfgenmsg(libc::AF_UNSPEC as u8, NFNL_SUBSYS_NFTABLES);
    let mut seq = 1;
    let mut out = Msg::with(NFNL_MSG_BATCH_BEGIN, 0, seq, &subsys).finish();
    let ty = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM;
    for (i, (family, table, set, key)) in elements.iter().enumerate() {
        seq += 1;
        let mut flags = libc::NLM_F_CREATE as u16;
        if i + 1 == elements.len() {
            flags |= libc::NLM_F_ACK as u16;
        }
        let mut m = Msg::with(ty, flags, seq, &nfgenmsg(*family, 0));
        m.str(NFTA_SET_ELEM_LIST_TABLE, table)
            .str(NFTA_SET_ELEM_LIST_SET, set)
            .begin(NFTA_SET_ELEM_LIST_ELEMENTS)
            .begin(NFTA_LIST_ELEM)
            .begin(NFTA_SET_ELEM_KEY)
            .attr(NFTA_DATA_VALUE, key)
            .end()
            .end()
            .end();
        out.extend(m.finish());
    }
    out.extend(Msg::with(NFNL_MSG_BATCH_END, 0, seq + 1, &subsys).finish());
    out
}

/// The index of a link in the caller's network namespace.
pub(crate) fn if_index(name: &str) -> Result<u32, Error> {
    let c = std::ffi::CString::new(name).map_err(|_| Error::Netlink {
        what: "looking up a link",
        source: io::ErrorKind::InvalidInput.into(),
    })?;
    // SAFETY: c is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(Error::Netlink {
            what: "looking up a link",
            source: io::Error::last_os_error(),
        });
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_element_batch_is_begin_elements_end() {
        let key = [7u8; 20];
        let b = add_set_elements_batch(&[
            (NFPROTO_ARP, "t", "machines", &[9u8; 20]),
            (NFPROTO_INET, "t", "machines", &key),
        ]);
        let mut msgs = Vec::new();
        let mut off = 0;
        while off < b.len() {
            let len = u32::from_ne_bytes(b[off..off + 4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(b[off + 4..off + 6].try_into().unwrap());
            let flags = u16::from_ne_bytes(b[off + 6..off + 8].try_into().unwrap());
            msgs.push((ty, flags, b[off + 16..off + 20].to_vec()));
            off += len;
        }
        assert_eq!(off, b.len());
        let ack = libc::NLM_F_ACK as u16;
        assert_eq!(msgs.len(), 4);
        assert_eq!(msgs[0].0, NFNL_MSG_BATCH_BEGIN);
        assert_eq!(msgs[0].1 & ack, 0);
        assert_eq!(
            msgs[0].2,
            [0, 0, 0, 10],
            "resource id: nftables, big-endian"
        );
        for m in &msgs[1..3] {
            assert_eq!(m.0, 0x0a0c);
            assert_ne!(m.1 & libc::NLM_F_CREATE as u16, 0);
        }
        // Only the last asks for an ACK: the one answer that says all applied.
        assert_eq!(msgs[1].1 & ack, 0);
        assert_ne!(msgs[2].1 & ack, 0);
        assert_eq!(msgs[1].2, [NFPROTO_ARP, 0, 0, 0]);
        assert_eq!(msgs[2].2, [NFPROTO_INET, 0, 0, 0]);
        assert_eq!(msgs[3].0, NFNL_MSG_BATCH_END);
        // The key sits at the end of the innermost attribute.
        let at = b.windows(key.len()).position(|w| w == key).unwrap();
        assert_eq!(
            u16::from_ne_bytes([b[at - 4], b[at - 3]]) as usize,
            4 + key.len()
        );
    }

    #[test]
    fn nested_attributes_have_lengths_and_padding() {
        let mut m = Msg::new(libc::RTM_NEWLINK, 0, &ifinfomsg(0, 0, 0, 0));
        m.begin(IFLA_LINKINFO).str(IFLA_INFO_KIND, "veth").end();
        let buf = m.finish();
        assert_eq!(
            u32::from_ne_bytes(buf[..4].try_into().unwrap()) as usize,
            buf.len()
        );
        let nest = 16 + IFINFOMSG_LEN;
        // nest header (4) + kind attr (4 + "veth\0" = 9, padded to 12)
        assert_eq!(u16::from_ne_bytes([buf[nest], buf[nest + 1]]), 16);
        assert_eq!(
            u16::from_ne_bytes([buf[nest + 2], buf[nest + 3]]),
            IFLA_LINKINFO | NLA_F_NESTED
        );
        assert_eq!(buf.len() % 4, 0);
    }
}
