//! Proxy settings: where the daemon's proxy is, what machines are told, and
//! what image builds use.
//!
//! The proxy comes from `firepit up --proxy URL`, else from the daemon's
//! `HTTPS_PROXY`, `HTTP_PROXY` or `ALL_PROXY` (either case, in that order);
//! `NO_PROXY` (either case) lists what goes direct. Only `http://` proxies
//! (the kind every tool speaks, `CONNECT` for TLS) are taken.
//!
//! Machines never see the proxy's address or credentials: they are told
//! `http://127.0.0.1:`[`RELAY_PORT`], where the daemon's relay
//! ([`crate::relay`]) listens inside each machine, and the relay adds the
//! credentials outside. Image builds run on the host and use the proxy
//! itself ([`ProxySettings::build_env`]).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::Error;

/// The port the relay listens on inside every machine (its loopback).
pub const RELAY_PORT: u16 = 3128;

/// The names a machine always reaches directly: its own loopback.
const LOCAL: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// The proxy the daemon forwards to.
#[derive(Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Its host: a name, an IPv4 address, or an IPv6 address without brackets.
    pub host: String,
    /// Its port (80 when the URL names none).
    pub port: u16,
    /// `Basic …` for `Proxy-Authorization`, from the URL's user info.
    authorization: Option<String>,
    /// The URL's user info, percent-encoded as given, for image builds.
    userinfo: Option<String>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        f.write_str(&self.display())
    }
}

impl Upstream {
    /// `http://host:port`, without credentials: what may be printed.
    pub fn display(&self) -> String {
        let mut s = if self.host.contains(':') {
            format!("http://[{}]:{}", self.host, self.port)
        } else {
            format!("http://{}:{}", self.host, self.port)
        };
        if self.authorization.is_some() {
            s.push_str(" (with credentials)");
        }
        s
    }

    /// The `Proxy-Authorization` value the relay adds, if the URL had
    /// credentials.
    pub fn authorization(&self) -> Option<&str> {
        self.authorization.as_deref()
    }

    /// `(host, port)` to connect to.
    pub fn addr(&self) -> (&str, u16) {
        (&self.host, self.port)
    }

    fn url_with_credentials(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match &self.userinfo {
            Some(u) => format!("http://{u}@{host}:{}/", self.port),
            None => format!("http://{host}:{}/", self.port),
        }
    }

    /// Parses `http://[user[:password]@]host[:port][/]` (or `host:port`).
    /// `source_name` says where it came from, for the error.
    pub fn parse(url: &str, source_name: &str) -> Result<Upstream, Error> {
        let shown = redact(url);
        let bad = |why: &str| Error::BadProxy {
            url: shown.clone(),
            source_name: source_name.into(),
            why: why.into(),
        };
        let url = url.trim();
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(bad(&format!(
                    "a {scheme}:// proxy is not supported; give an http:// one (TLS goes through it with CONNECT)"
                )));
            }
            None => url,
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) || authority.is_empty() {
            return Err(bad("give http://host:port, with no path"));
        }
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("an unclosed '['"))?;
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("not an IPv6 address in [ ]"));
            }
            match after {
                "" => (h, None),
                p => (
                    h,
                    Some(p.strip_prefix(':').ok_or_else(|| bad("a bad port"))?),
                ),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("a bad port"))?,
        };
        let name_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
        if !name_ok {
            return Err(bad("no host name"));
        }
        let authorization = match userinfo {
            None => None,
            Some(u) => {
                let decoded =
                    percent_decode(u).ok_or_else(|| bad("bad %-escapes in the user info"))?;
                Some(format!("Basic {}", STANDARD.encode(decoded)))
            }
        };
        Ok(Upstream {
            host: host.to_ascii_lowercase(),
            port,
            authorization,
            userinfo: userinfo.map(str::to_owned),
        })
    }
}

/// The proxy settings of a daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// The proxy.
    pub upstream: Upstream,
    /// What goes direct (`NO_PROXY`), as given, besides the machine's own
    /// loopback.
    pub no_proxy: Vec<String>,
    /// Where the proxy came from: `--proxy` or the variable's name.
    pub source: String,
    /// Notes for `firepit up` (variables that disagree, say).
    pub notes: Vec<String>,
}

impl ProxySettings {
    /// The settings from `flag` (`--proxy`), else from the environment read
    /// through `env`; `None` when neither names a proxy. `--proxy off`
    /// turns a proxy of the environment off.
    pub fn resolve(
        flag: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<ProxySettings>, Error> {
        let get = |name: &str| {
            env(name)
                .or_else(|| env(&name.to_ascii_lowercase()))
                .filter(|v| !v.trim().is_empty())
        };
        let mut notes = Vec::new();
        let (url, source) = match flag {
            Some("off") => return Ok(None),
            Some(url) => (url.to_owned(), "--proxy".to_owned()),
            None => {
                let found = ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"]
                    .iter()
                    .find_map(|n| get(n).map(|v| (v, n.to_string())));
                let Some((url, name)) = found else {
                    return Ok(None);
                };
                if let Some(http) = get("HTTP_PROXY")
                    && http != url
                {
                    notes.push(format!(
                        "HTTP_PROXY differs from {name}; machines use {name}'s proxy for both"
                    ));
                }
                (url, name)
            }
        };
        let upstream = Upstream::parse(&url, &source)?;
        let no_proxy = get("NO_PROXY")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(ProxySettings {
            upstream,
            no_proxy,
            source,
            notes,
        }))
    }

    /// `NO_PROXY` for machines: their loopback, then the daemon's list.
    fn no_proxy_list(&self) -> String {
        let mut all: Vec<&str> = LOCAL.to_vec();
        for n in &self.no_proxy {
            if !all.contains(&n.as_str()) {
                all.push(n);
            }
        }
        all.join(",")
    }

    /// The environment of every machine: the proxy variables in both cases,
    /// naming the relay on the machine's loopback. Nothing of the proxy's
    /// address or credentials.
    pub fn machine_env(&self) -> Vec<(String, String)> {
        let relay = format!("http://127.0.0.1:{RELAY_PORT}");
        let no_proxy = self.no_proxy_list();
        let mut env = Vec::new();
        for (name, value) in [
            ("HTTP_PROXY", &relay),
            ("HTTPS_PROXY", &relay),
            ("NO_PROXY", &no_proxy),
        ] {
            env.push((name.to_owned(), value.clone()));
            env.push((name.to_ascii_lowercase(), value.clone()));
        }
        env
    }

    /// The environment of an image build, which runs on the host: the proxy
    /// itself, credentials included.
    pub fn build_env(&self) -> Vec<(String, String)> {
        let url = self.upstream.url_with_credentials();
        let no_proxy = self.no_proxy.join(",");
        let mut env = Vec::new();
        for (name, value) in [
            ("HTTP_PROXY", &url),
            ("HTTPS_PROXY", &url),
            ("NO_PROXY", &no_proxy),
        ] {
            env.push((name.to_owned(), value.clone()));
            env.push((name.to_ascii_lowercase(), value.clone()));
        }
        env
    }

    /// One line for `firepit up`.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "proxy {} (from {}), reached by machines through the daemon at 127.0.0.1:{RELAY_PORT}",
            self.upstream.display(),
            self.source
        );
        if !self.no_proxy.is_empty() {
            s.push_str(&format!("; NO_PROXY {}", self.no_proxy.join(",")));
        }
        for n in &self.notes {
            s.push_str("; ");
            s.push_str(n);
        }
        s
    }
}

/// `url` with any password replaced, for messages.
fn redact(url: &str) -> String {
    match url.rsplit_once('@') {
        Some((before, after)) => {
            let scheme = before.split_once("://").map(|(s, _)| s);
            match scheme {
                Some(s) => format!("{s}://…@{after}"),
                None => format!("…@{after}"),
            }
        }
        None => url.to_owned(),
    }
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn urls_parse_and_credentials_stay_out_of_sight() {
        let u = Upstream::parse("http://us%40r:p%3Ass@Proxy.Corp:8080/", "t").unwrap();
        assert_eq!(u.addr(), ("proxy.corp", 8080));
        assert_eq!(
            u.authorization(),
            Some(format!("Basic {}", STANDARD.encode("us@r:p:ss")).as_str())
        );
        let shown = format!("{u:?} {}", u.display());
        assert!(
            !shown.contains("p%3Ass") && !shown.contains("us%40r"),
            "{shown}"
        );
        assert_eq!(
            u.url_with_credentials(),
            "http://us%40r:p%3Ass@proxy.corp:8080/"
        );
        assert_eq!(
            Upstream::parse("10.0.0.1:3128", "t").unwrap().addr(),
            ("10.0.0.1", 3128)
        );
        assert_eq!(
            Upstream::parse("http://[::1]:3128", "t").unwrap().addr(),
            ("::1", 3128)
        );
        assert_eq!(Upstream::parse("http://proxy", "t").unwrap().port, 80);
        for bad in [
            "https://proxy:443",
            "socks5://proxy:1080",
            "http://proxy:0",
            "http://proxy:99999",
            "http://proxy:8080/path",
            "http://",
            "http://[::1",
            "http://a b:1",
            "http://u:%zz@proxy:1",
        ] {
            let e = Upstream::parse(bad, "--proxy").unwrap_err().to_string();
            assert!(e.contains("--proxy"), "{bad}: {e}");
        }
        let e = Upstream::parse("ftp://user:secret@proxy:1", "X")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn the_flag_wins_then_https_then_http_either_case() {
        let none = ProxySettings::resolve(None, env(&[])).unwrap();
        assert!(none.is_none());
        let s = ProxySettings::resolve(
            None,
            env(&[("https_proxy", "http://a:1"), ("HTTP_PROXY", "http://b:2")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.upstream.addr(), ("a", 1));
        assert_eq!(s.source, "HTTPS_PROXY");
        assert!(s.notes[0].contains("HTTP_PROXY differs"), "{:?}", s.notes);
        let s = ProxySettings::resolve(Some("http://c:3"), env(&[("HTTPS_PROXY", "http://a:1")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.upstream.addr(), s.source.as_str()),
            (("c", 3), "--proxy")
        );
        assert!(
            ProxySettings::resolve(Some("off"), env(&[("HTTPS_PROXY", "http://a:1")]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn machines_are_told_the_relay_and_never_the_proxy() {
        let s = ProxySettings::resolve(
            Some("http://user:secret@proxy.corp:3128"),
            env(&[("no_proxy", "corp.example, localhost")]),
        )
        .unwrap()
        .unwrap();
        let env = s.machine_env();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("HTTPS_PROXY"), Some("http://127.0.0.1:3128"));
        assert_eq!(get("http_proxy"), Some("http://127.0.0.1:3128"));
        assert_eq!(
            get("no_proxy"),
            Some("localhost,127.0.0.1,::1,corp.example")
        );
        let told = format!("{env:?}");
        assert!(
            !told.contains("secret") && !told.contains("proxy.corp"),
            "{told}"
        );
        let summary = s.summary();
        assert!(
            !summary.contains("secret") && summary.contains("proxy.corp"),
            "{summary}"
        );
        let build = s.build_env();
        assert!(build.contains(&(
            "https_proxy".into(),
            "http://user:secret@proxy.corp:3128/".into()
        )));
    }
}
