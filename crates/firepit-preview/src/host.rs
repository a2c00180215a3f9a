//! Preview hosts: `<port>-<session>.<domain>[:<port>]`.
//!
//! A Host header is one of three things: a preview host of this firepit's
//! domain (port 1-65535, session `[a-z0-9-]{1,32}`, compared without regard to
//! case), a host that looks like a preview host but is not one of ours (refused
//! with 400: `8000-abc.localhost.evil`, `x.8000-abc.localhost`, port 0), or
//! anything else, which is the daemon's own API.

/// A parsed preview host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewHost {
    /// The port inside the machine.
    pub port: u16,
    /// The session id (lower case).
    pub session: String,
}

impl PreviewHost {
    /// The host name without the domain: `8000-abc`.
    pub fn label(&self) -> String {
        format!("{}-{}", self.port, self.session)
    }
}

/// What a Host header names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKind {
    /// A preview of a session's port.
    Preview(PreviewHost),
    /// Not a preview host: the daemon's API.
    Daemon,
    /// A malformed host, or one that tries to pass for a preview host; says why.
    Bad(String),
}

/// Longest session id a preview host may carry.
const MAX_SESSION: usize = 32;

/// Classifies a Host header value for a daemon whose preview domain is `domain`.
pub fn classify(host: &str, domain: &str) -> HostKind {
    let host = host.trim();
    if host.is_empty() {
        return HostKind::Bad("the request has an empty Host header".into());
    }
    if host.starts_with('[') {
        // An IPv6 literal: never a preview host.
        return HostKind::Daemon;
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) => {
            if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
                return HostKind::Bad(format!("the Host header {host:?} has a bad port"));
            }
            name
        }
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let domain = domain.to_ascii_lowercase();
    if name == domain {
        return HostKind::Daemon;
    }
    if let Some(sub) = name.strip_suffix(&domain).and_then(|s| s.strip_suffix('.')) {
        return match parse_label(sub) {
            Some(p) => HostKind::Preview(p),
            None => HostKind::Bad(format!(
                "{name:?} is not a preview host: previews are `<port>-<session>.{domain}` with a port of 1-65535"
            )),
        };
    }
    // Something else: a preview-looking first label under another domain is
    // refused, so that `8000-abc.localhost.evil` never reaches the API.
    let first = name.split('.').next().unwrap_or_default();
    if name.contains('.') && looks_like_preview(first) {
        return HostKind::Bad(format!(
            "{name:?} is not a preview host of this firepit (its preview domain is {domain:?})"
        ));
    }
    HostKind::Daemon
}

fn looks_like_preview(label: &str) -> bool {
    label
        .split_once('-')
        .is_some_and(|(p, _)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses `<port>-<session>` (already lower case).
fn parse_label(label: &str) -> Option<PreviewHost> {
    let (port, session) = label.split_once('-')?;
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if port.starts_with('0') {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    if session.is_empty()
        || session.len() > MAX_SESSION
        || !session
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return None;
    }
    Some(PreviewHost {
        port,
        session: session.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preview(port: u16, session: &str) -> HostKind {
        HostKind::Preview(PreviewHost {
            port,
            session: session.into(),
        })
    }

    #[test]
    fn preview_hosts_parse() {
        assert_eq!(
            classify("8000-abc.localhost", "localhost"),
            preview(8000, "abc")
        );
        assert_eq!(
            classify("8000-abc.localhost:7777", "localhost"),
            preview(8000, "abc")
        );
        assert_eq!(
            classify("8000-ABC.LocalHost:7777", "localhost"),
            preview(8000, "abc")
        );
        assert_eq!(
            classify("8000-abc.localhost.", "localhost"),
            preview(8000, "abc")
        );
        assert_eq!(
            classify("1-a-b.dev.example.com", "dev.example.com"),
            preview(1, "a-b")
        );
        assert_eq!(
            classify("65535-x.localhost", "localhost"),
            preview(65535, "x")
        );
        assert_eq!(
            classify("7777-abc.localhost:7777", "localhost"),
            preview(7777, "abc"),
            "the daemon's own port names the machine's port, not the daemon"
        );
    }

    #[test]
    fn daemon_hosts_are_not_previews() {
        for h in [
            "localhost",
            "localhost:7777",
            "127.0.0.1:7777",
            "[::1]:7777",
            "example.com",
        ] {
            assert_eq!(classify(h, "localhost"), HostKind::Daemon, "{h}");
        }
    }

    #[test]
    fn bad_hosts_are_refused() {
        for h in [
            "",
            "8000-abc.localhost.evil",
            "8000-abc.localhost.evil:7777",
            "x.8000-abc.localhost",
            "0-abc.localhost",
            "08000-abc.localhost",
            "65536-abc.localhost",
            "99999999-abc.localhost",
            "8000-.localhost",
            "8000-a_b.localhost",
            "abc.localhost",
            "8000abc.localhost",
            "8000-abc.localhost:",
            "8000-abc.localhost:77a",
            "8000-abc.localhost:123456",
            &format!("8000-{}.localhost", "a".repeat(33)),
        ] {
            assert!(
                matches!(classify(h, "localhost"), HostKind::Bad(_)),
                "{h:?}"
            );
        }
    }
}
