//! Signed, expiring tokens: the ticket of the owner's cookie handshake, the
//! owner's cookie, and share links.
//!
//! A token is `base64url(payload) "." base64url(HMAC-SHA256(key, payload))`
//! where the payload is `v1|<kind>|<session>|<port>|<expires_at>|<share id>`.
//! The key (32 random bytes) is made on first run in the data dir, mode 0600;
//! a token made with another key, or changed in any byte, does not verify.
//! Expiry is in Unix seconds. Revocation (of shares) is the caller's: the
//! token names the share's id.

use std::fs;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::Error;

type HmacSha256 = Hmac<Sha256>;

/// What a token lets its bearer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A one-minute ticket the daemon hands to a preview host, to be turned
    /// into an owner cookie.
    Ticket,
    /// The owner's cookie on a preview host.
    Owner,
    /// A share link (and the share cookie made from it).
    Share,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Ticket => "ticket",
            Kind::Owner => "owner",
            Kind::Share => "share",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "ticket" => Kind::Ticket,
            "owner" => Kind::Owner,
            "share" => Kind::Share,
            _ => return None,
        })
    }
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// What it is for.
    pub kind: Kind,
    /// The session it opens.
    pub session: String,
    /// The port it opens.
    pub port: u16,
    /// Unix seconds after which it is refused.
    pub expires_at: i64,
    /// The share's id (shares only; empty otherwise).
    pub share: String,
}

impl Claims {
    /// Whether the claims open `port` of `session` as `kind`.
    pub fn opens(&self, kind: Kind, session: &str, port: u16) -> bool {
        self.kind == kind && self.session == session && self.port == port
    }
}

/// Signs and verifies tokens with one key.
#[derive(Clone)]
pub struct Signer {
    key: [u8; 32],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    /// A signer with a fresh random key (tokens die with it).
    pub fn random() -> Signer {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Signer { key }
    }

    /// A signer with `key`.
    pub fn from_key(key: [u8; 32]) -> Signer {
        Signer { key }
    }

    /// Reads the key at `path`, making it (mode 0600) if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Signer, Error> {
        let err = |what: &str, source| Error::Key {
            what: format!("{what} the preview signing key {}", path.display()),
            source,
        };
        match fs::read(path) {
            Ok(bytes) if bytes.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                return Ok(Signer { key });
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err("reading", e)),
        }
        let signer = Signer::random();
        firepit_util::write_private(path, &signer.key).map_err(|e| err("writing", e))?;
        Ok(signer)
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload);
        mac
    }

    /// The token for `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let payload = format!(
            "v1|{}|{}|{}|{}|{}",
            claims.kind.as_str(),
            claims.session,
            claims.port,
            claims.expires_at,
            claims.share
        );
        let tag = self.mac(payload.as_bytes()).finalize().into_bytes();
        format!("{}.{}", B64.encode(payload), B64.encode(tag))
    }

    /// The claims of `token` if this key signed it and it has not expired at
    /// `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, Error> {
        if token.len() > 1024 {
            return Err(Error::BadToken);
        }
        let (payload, tag) = token.split_once('.').ok_or(Error::BadToken)?;
        let payload = B64.decode(payload).map_err(|_| Error::BadToken)?;
        let tag = B64.decode(tag).map_err(|_| Error::BadToken)?;
        self.mac(&payload)
            .verify_slice(&tag)
            .map_err(|_| Error::BadToken)?;
        let payload = String::from_utf8(payload).map_err(|_| Error::BadToken)?;
        let parts: Vec<&str> = payload.split('|').collect();
        let [v, kind, session, port, expires_at, share] = parts[..] else {
            return Err(Error::BadToken);
        };
        if v != "v1" {
            return Err(Error::BadToken);
        }
        let claims = Claims {
            kind: Kind::parse(kind).ok_or(Error::BadToken)?,
            session: session.to_owned(),
            port: port.parse().map_err(|_| Error::BadToken)?,
            expires_at: expires_at.parse().map_err(|_| Error::BadToken)?,
            share: share.to_owned(),
        };
        if claims.expires_at <= now {
            return Err(Error::Expired);
        }
        Ok(claims)
    }
}

/// Now, in Unix seconds.
pub use firepit_util::now;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn claims() -> Claims {
        Claims {
            kind: Kind::Share,
            session: "abc".into(),
            port: 8000,
            expires_at: 1000,
            share: "s1".into(),
        }
    }

    #[test]
    fn tokens_round_trip_until_they_expire() {
        let s = Signer::random();
        let t = s.sign(&claims());
        assert_eq!(s.verify(&t, 999).unwrap(), claims());
        assert!(matches!(s.verify(&t, 1000), Err(Error::Expired)));
        assert!(claims().opens(Kind::Share, "abc", 8000));
        assert!(!claims().opens(Kind::Share, "abc", 8001));
        assert!(!claims().opens(Kind::Share, "abd", 8000));
        assert!(!claims().opens(Kind::Owner, "abc", 8000));
    }

    #[test]
    fn forged_and_damaged_tokens_are_refused() {
        let s = Signer::random();
        let t = s.sign(&claims());
        assert!(matches!(
            Signer::random().verify(&t, 0),
            Err(Error::BadToken)
        ));
        // Another payload with the old tag.
        let (_, tag) = t.split_once('.').unwrap();
        let forged = format!("{}.{tag}", B64.encode("v1|share|abc|8001|1000|s1"));
        assert!(matches!(s.verify(&forged, 0), Err(Error::BadToken)));
        for bad in [
            "",
            ".",
            "abc",
            "a.b",
            &t[1..],
            &format!("{t}x"),
            &"a".repeat(5000),
        ] {
            assert!(matches!(s.verify(bad, 0), Err(Error::BadToken)), "{bad:?}");
        }
        // A well-signed payload that does not parse.
        let odd = "v1|share|abc";
        let tag = s.mac(odd.as_bytes()).finalize().into_bytes();
        let odd = format!("{}.{}", B64.encode(odd), B64.encode(tag));
        assert!(matches!(s.verify(&odd, 0), Err(Error::BadToken)));
    }

    #[test]
    fn the_key_is_made_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("preview.key");
        let a = Signer::load_or_create(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let b = Signer::load_or_create(&path).unwrap();
        assert_eq!(a.key, b.key);
        let t = a.sign(&claims());
        assert!(b.verify(&t, 0).is_ok());
    }

    /// Fuzz-style checks with a fixed seed (no new dependency): arbitrary
    /// input never panics or verifies, signed claims come back exactly, and
    /// no changed byte verifies.
    mod fuzz {
        use super::*;
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};

        fn random_string(rng: &mut StdRng, alphabet: &[u8], max: usize) -> String {
            let len = rng.random_range(0..=max);
            (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
                .collect()
        }

        const B64URL: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/| ";

        #[test]
        fn arbitrary_tokens_never_panic_or_verify() {
            let mut rng = StdRng::seed_from_u64(0x5eed_0003);
            let s = Signer::random();
            for i in 0..20_000 {
                let token = if i % 2 == 0 {
                    let len = rng.random_range(0..200);
                    let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                    String::from_utf8_lossy(&bytes).into_owned()
                } else {
                    random_string(&mut rng, B64URL, 200)
                };
                assert!(s.verify(&token, 0).is_err(), "{token:?}");
            }
            // Well-formed base64 around a payload that is not one of ours.
            for _ in 0..2_000 {
                let payload = random_string(&mut rng, b"v1|ownerticketshare0123456789-abc", 60);
                let tag: Vec<u8> = (0..32).map(|_| rng.random()).collect();
                let token = format!("{}.{}", B64.encode(&payload), B64.encode(&tag));
                assert!(s.verify(&token, 0).is_err(), "{payload:?}");
            }
        }

        #[test]
        fn claims_round_trip_exactly_and_changed_tokens_fail() {
            let mut rng = StdRng::seed_from_u64(0x5eed_0004);
            let s = Signer::random();
            for _ in 0..3_000 {
                let kind = [Kind::Ticket, Kind::Owner, Kind::Share][rng.random_range(0..3)];
                // Sessions and share ids as the daemon makes them, and at
                // times with the payload's separator in them.
                let alphabet: &[u8] = if rng.random_bool(0.1) {
                    b"abc|019-"
                } else {
                    b"abcdefghijklmnopqrstuvwxyz0123456789-"
                };
                let claims = Claims {
                    kind,
                    session: random_string(&mut rng, alphabet, 32),
                    port: rng.random(),
                    expires_at: rng.random_range(1..i64::MAX),
                    share: random_string(&mut rng, alphabet, 12),
                };
                let token = s.sign(&claims);
                match s.verify(&token, 0) {
                    Ok(back) => assert_eq!(back, claims),
                    Err(e) => {
                        assert!(matches!(e, Error::BadToken), "{e}");
                        assert!(
                            claims.session.contains('|') || claims.share.contains('|'),
                            "{claims:?} did not come back"
                        );
                    }
                }
                assert!(matches!(
                    s.verify(&token, claims.expires_at),
                    Err(Error::Expired) | Err(Error::BadToken)
                ));
                // Any one character changed: refused.
                let mut bytes = token.clone().into_bytes();
                let at = rng.random_range(0..bytes.len());
                let to = B64URL[rng.random_range(0..B64URL.len())];
                if bytes[at] == to {
                    continue;
                }
                bytes[at] = to;
                let changed = String::from_utf8(bytes).unwrap();
                assert!(s.verify(&changed, 0).is_err(), "{token} -> {changed}");
            }
        }
    }
}
