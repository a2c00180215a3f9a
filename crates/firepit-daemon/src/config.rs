//! The daemon's settings, resolved by the CLI from flags, environment and
//! defaults, and checked by [`Config::validate`] before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;

use firepit_wire::api::Limits;

use crate::Error;

/// Everything the daemon needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Where the store, token, machines and images live.
    pub data_dir: PathBuf,
    /// Where images live; `<data_dir>/images` unless set apart (CI keeps a cache).
    pub images_dir: PathBuf,
    /// Domain of preview URLs (`<port>-<session>.<domain>`).
    pub domain: String,
    /// The port preview URLs name (`http://<port>-<session>.<domain>:<public_port>/`):
    /// the port the daemon's listener got, set by `firepit up` after binding.
    pub public_port: u16,
    /// Image used when a request names none.
    pub default_image: String,
    /// Limits used when a request gives none.
    pub default_limits: Limits,
    /// The disk pool machines' writable layers live in, which enforces their
    /// disk limits (`<data_dir>/layers.img`, mounted at `<data_dir>/layers`).
    pub disk_pool: DiskPool,
    /// The executable that launches machines (`firepit __machine-launch`).
    pub launcher: PathBuf,
    /// The static guest executable bind-mounted into every machine.
    pub guest_binary: PathBuf,
    /// Largest file accepted by a single upload, in bytes.
    pub max_upload_bytes: u64,
    /// Name of this daemon among several on one host (tests, a second
    /// install): its machines get their own cgroup parent, firewall table,
    /// veth names and subnet. `None` is the default install.
    pub instance: Option<String>,
    /// The machines' subnet (`firepit up --subnet`), in place of the
    /// default install's `10.88.0.0/16` or an instance's /24; the gateway is
    /// its first address. Its size is how many machines with network the
    /// daemon holds.
    pub subnet: Option<firepit_machine::namespaces::Ipv4Net>,
    /// IPv4 ranges machines may reach although private, shared or
    /// link-local (`firepit up --allow-net`).
    pub allow_net: Vec<firepit_machine::namespaces::Ipv4Net>,
    /// The model the agents use; `None` leaves the agent endpoints saying how
    /// to configure one.
    pub model: Option<firepit_agent::ModelConfig>,
    /// The forge (GitHub or GitHub Enterprise) and its token.
    pub forge: firepit_forge::ForgeConfig,
    /// The origin browsers reach the UI at when it is not
    /// `http://<domain>:<port>`: a TLS front proxy's `https://firepit.example.com`.
    /// Previews then take its scheme and port too.
    pub public_origin: Option<PublicOrigin>,
    /// CA certificates (PEM) every machine trusts besides its image's
    /// (`firepit up --ca-file`, and the host's own additions).
    pub extra_ca: Option<String>,
    /// The proxy machines reach the web through, by the daemon's relay
    /// (`firepit up --proxy`, or the daemon's `HTTPS_PROXY`…).
    pub proxy: Option<firepit_trust::proxy::ProxySettings>,
}

/// The UI's origin as browsers see it (`firepit up --public-url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicOrigin {
    /// `https` (behind a TLS front proxy) rather than `http`.
    pub https: bool,
    /// The host name or address literal, lower case (`[…]` around IPv6).
    pub host: String,
    /// The port, when not the scheme's default.
    pub port: Option<u16>,
}

impl PublicOrigin {
    /// Parses `http[s]://host[:port][/]`; anything more (a path, a query,
    /// user info) is refused, saying why.
    pub fn parse(url: &str) -> Result<PublicOrigin, Error> {
        let bad = |why: &str| {
            Error::BadRequest(format!(
                "--public-url {url:?} {why}; give an origin like `https://firepit.example.com`"
            ))
        };
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("is not an http:// or https:// URL"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(bad("has a path, query or fragment"));
        }
        if authority.contains('@') {
            return Err(bad("has user info"));
        }
        let (host, port) = match authority.rfind(':') {
            Some(i) if !authority[i..].contains(']') => {
                let port: u16 = authority[i + 1..]
                    .parse()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("has a bad port"))?;
                (&authority[..i], Some(port))
            }
            _ => (authority, None),
        };
        let host = host.to_ascii_lowercase();
        let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            v6.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            is_dns_name(&host)
        };
        if !host_ok {
            return Err(bad("does not name a host"));
        }
        let default = if https { 443 } else { 80 };
        Ok(PublicOrigin {
            https,
            host,
            port: port.filter(|p| *p != default),
        })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }

    /// `:<port>` when the port is not the scheme's default, else nothing.
    pub fn port_suffix(&self) -> String {
        self.port.map(|p| format!(":{p}")).unwrap_or_default()
    }

    /// The origin as browsers write it in `Origin`: `https://firepit.example.com`.
    pub fn origin(&self) -> String {
        format!("{}://{}{}", self.scheme(), self.host, self.port_suffix())
    }
}

/// Whether `name` is a DNS name of letters, digits and hyphens (dots between labels).
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

impl Config {
    /// Settings with the documented defaults under `data_dir`.
    pub fn new(data_dir: PathBuf, launcher: PathBuf, guest_binary: PathBuf) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7777)),
            images_dir: data_dir.join("images"),
            data_dir,
            domain: "localhost".into(),
            public_port: 7777,
            default_image: "default".into(),
            default_limits: Limits {
                memory_bytes: Some(2 << 30),
                cpus: Some(1.0),
                pids: Some(4096),
                disk_bytes: Some(10 << 30),
            },
            disk_pool: DiskPool::Auto,
            launcher,
            guest_binary,
            max_upload_bytes: 512 << 20,
            instance: None,
            allow_net: Vec::new(),
            subnet: None,
            model: None,
            forge: firepit_forge::ForgeConfig::new("https://github.com", None, None)
                .expect("the default forge URL is valid"),
            public_origin: None,
            extra_ca: None,
            proxy: None,
        }
    }

    /// The preview URL of `port` in `session`: on the public origin's
    /// scheme and port when one is set, else `http` and the daemon's port.
    pub fn preview_url(&self, session: &str, port: u16) -> String {
        format!(
            "{}/",
            self.preview_origin(&format!("{port}-{session}"), Some(self.public_port))
        )
    }

    /// The origin of the preview host `<label>.<domain>`. Without a public
    /// origin it is `http` on `daemon_port`, the port the client reached
    /// the daemon on (`None`: the default port).
    pub fn preview_origin(&self, label: &str, daemon_port: Option<u16>) -> String {
        match &self.public_origin {
            Some(p) => format!(
                "{}://{label}.{}{}",
                p.scheme(),
                self.domain,
                p.port_suffix()
            ),
            None => match daemon_port {
                Some(d) => format!("http://{label}.{}:{d}", self.domain),
                None => format!("http://{label}.{}", self.domain),
            },
        }
    }

    /// The UI's (and the API's) origin: the public origin when one is set,
    /// else `http://<domain>[:daemon_port]`.
    pub fn ui_origin(&self, daemon_port: Option<u16>) -> String {
        match (&self.public_origin, daemon_port) {
            (Some(p), _) => p.origin(),
            (None, Some(d)) => format!("http://{}:{d}", self.domain),
            (None, None) => format!("http://{}", self.domain),
        }
    }

    /// Refuses settings that cannot work, saying which and why.
    pub fn validate(&self) -> Result<(), Error> {
        if !is_dns_name(&self.domain) {
            return Err(Error::BadRequest(format!(
                "--domain {:?} is not a DNS name like `localhost` or `dev.example.com`",
                self.domain
            )));
        }
        if let Some(name) = &self.instance
            && (!(1..=6).contains(&name.len())
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        {
            return Err(Error::BadRequest(format!(
                "instance name {name:?} must be 1 to 6 characters of a-z and 0-9"
            )));
        }
        if !self.launcher.is_file() {
            return Err(Error::BadRequest(format!(
                "the machine launcher {} does not exist",
                self.launcher.display()
            )));
        }
        if !self.guest_binary.is_file() {
            return Err(Error::BadRequest(format!(
                "the guest executable {} does not exist",
                self.guest_binary.display()
            )));
        }
        if self.disk_pool == DiskPool::Off && self.default_limits.disk_bytes.is_some() {
            return Err(Error::BadRequest(
                "a default disk limit needs the disk pool, which is off".into(),
            ));
        }
        if let DiskPool::Size(size) = self.disk_pool
            && size < firepit_machine::namespaces::MIN_POOL
        {
            return Err(Error::BadRequest(format!(
                "the disk pool size {size} bytes is too small; give at least {} MiB",
                firepit_machine::namespaces::MIN_POOL >> 20
            )));
        }
        crate::sessions::check_limits(&self.default_limits)
    }

    /// The disk pool's image and mount point.
    pub fn disk_pool_paths(&self) -> (PathBuf, PathBuf) {
        (
            self.data_dir.join("layers.img"),
            self.data_dir.join("layers"),
        )
    }
}

/// The size of the disk pool, which is fixed when its image is first made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskPool {
    /// Half the space free on the data dir's file system when it is made.
    Auto,
    /// This many bytes.
    Size(u64),
    /// No pool: machines have no disk limits (hosts without btrfs).
    Off,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_origins_parse_to_what_browsers_send() {
        let p = PublicOrigin::parse("https://Firepit.Example.com/").unwrap();
        assert_eq!(p.origin(), "https://firepit.example.com");
        assert!(p.https);
        assert_eq!(
            PublicOrigin::parse("https://firepit.example.com:443")
                .unwrap()
                .origin(),
            "https://firepit.example.com",
            "the default port is left out, as in Origin"
        );
        assert_eq!(
            PublicOrigin::parse("http://localhost:7777")
                .unwrap()
                .origin(),
            "http://localhost:7777"
        );
        assert_eq!(
            PublicOrigin::parse("https://[::1]:8443").unwrap().origin(),
            "https://[::1]:8443"
        );
        for bad in [
            "",
            "firepit.example.com",
            "ftp://x",
            "https://",
            "https://x/path",
            "https://x?q",
            "https://u@x",
            "https://x:0",
            "https://x:99999",
            "https://x:",
            "https://a_b",
            "https://[zz]",
        ] {
            let e = PublicOrigin::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--public-url"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn preview_urls_follow_the_public_origin() {
        let mut c = Config::new("/d".into(), "/l".into(), "/g".into());
        c.public_port = 7777;
        assert_eq!(
            c.preview_url("abc", 8000),
            "http://8000-abc.localhost:7777/"
        );
        assert_eq!(c.ui_origin(Some(7777)), "http://localhost:7777");
        c.domain = "firepit.example.com".into();
        c.public_origin = Some(PublicOrigin::parse("https://firepit.example.com").unwrap());
        assert_eq!(
            c.preview_url("abc", 8000),
            "https://8000-abc.firepit.example.com/"
        );
        assert_eq!(c.ui_origin(Some(7777)), "https://firepit.example.com");
    }
}
