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

    /// Fuzz-style checks with a fixed seed (no new dependency): arbitrary
    /// input never panics, and what parses round-trips.
    mod fuzz {
        use super::*;
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};

        /// Characters hosts are made of, and some that they are not.
        const ALPHABET: &[char] = &[
            'a',
            'b',
            'z',
            'A',
            'Z',
            '0',
            '1',
            '7',
            '9',
            '-',
            '.',
            ':',
            '[',
            ']',
            '_',
            ' ',
            '@',
            '/',
            '\\',
            '%',
            '\0',
            '\u{e9}',
            '\u{130}',
            '\u{212a}',
            '\u{ff0e}',
            '\u{1f525}',
        ];

        fn random_text(rng: &mut StdRng) -> String {
            let len = rng.random_range(0..40);
            (0..len)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
                .collect()
        }

        fn random_session(rng: &mut StdRng) -> String {
            const S: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";
            let len = rng.random_range(1..=MAX_SESSION);
            (0..len)
                .map(|_| S[rng.random_range(0..S.len())] as char)
                .collect()
        }

        fn random_domain(rng: &mut StdRng) -> String {
            let labels = rng.random_range(1..4);
            (0..labels)
                .map(|_| {
                    let len = rng.random_range(1..10);
                    (0..len)
                        .map(|_| (b'a' + rng.random_range(0..26)) as char)
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
                .join(".")
        }

        fn random_case(rng: &mut StdRng, s: &str) -> String {
            s.chars()
                .map(|c| {
                    if rng.random_bool(0.5) {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect()
        }

        #[test]
        fn arbitrary_hosts_never_panic_and_previews_are_well_formed() {
            let mut rng = StdRng::seed_from_u64(0x5eed_0001);
            for i in 0..50_000 {
                let host = if i % 2 == 0 {
                    let len = rng.random_range(0..48);
                    let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                    String::from_utf8_lossy(&bytes).into_owned()
                } else {
                    random_text(&mut rng)
                };
                let domain = if i % 3 == 0 {
                    random_text(&mut rng)
                } else {
                    "localhost".to_owned()
                };
                if let HostKind::Preview(p) = classify(&host, &domain) {
                    assert_ne!(p.port, 0, "{host:?}");
                    assert!(
                        !p.session.is_empty()
                            && p.session.len() <= MAX_SESSION
                            && p.session
                                .bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                        "{host:?} gave {p:?}"
                    );
                    // What parsed names itself again.
                    let again = format!("{}.{}", p.label(), domain.trim());
                    assert_eq!(
                        classify(&again, &domain),
                        HostKind::Preview(p.clone()),
                        "{host:?} -> {again:?}"
                    );
                }
            }
        }

        #[test]
        fn preview_hosts_round_trip() {
            let mut rng = StdRng::seed_from_u64(0x5eed_0002);
            for _ in 0..20_000 {
                let p = PreviewHost {
                    port: rng.random_range(1..=u16::MAX),
                    session: random_session(&mut rng),
                };
                let domain = random_domain(&mut rng);
                let mut host = random_case(&mut rng, &format!("{}.{domain}", p.label()));
                if rng.random_bool(0.3) {
                    host.push('.');
                }
                if rng.random_bool(0.5) {
                    host.push_str(&format!(":{}", rng.random_range(0..=u16::MAX)));
                }
                assert_eq!(
                    classify(&host, &random_case(&mut rng, &domain)),
                    HostKind::Preview(p.clone()),
                    "{host:?}"
                );
                // Under any other domain it is never a preview, and never
                // the daemon's either.
                let other = format!("{}.{domain}.evil", p.label());
                assert!(
                    matches!(classify(&other, &domain), HostKind::Bad(_)),
                    "{other:?}"
                );
            }
        }
    }
}
