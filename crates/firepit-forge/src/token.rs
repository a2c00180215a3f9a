//! The forge token: kept out of `Debug`, `Display` and every error message.

use std::fmt;

/// A forge token. It prints as `[redacted]`; [`Token::expose`] is the one way
/// to read it, for the `Authorization` header the daemon adds.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps `secret`; `None` when it is empty or blank.
    pub fn new(secret: impl Into<String>) -> Option<Token> {
        let s = secret.into().trim().to_owned();
        (!s.is_empty()).then_some(Token(s))
    }

    /// The secret itself, for an `Authorization` header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `Basic` credentials for git over HTTPS (`x-access-token:<token>`).
    pub fn basic_auth(&self) -> String {
        use base64::Engine;
        let raw = format!("x-access-token:{}", self.0);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([redacted])")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `text` with every occurrence of the token (and of its `Basic` encoding)
/// replaced by `[redacted]`.
pub fn redact(text: &str, token: Option<&Token>) -> String {
    let Some(t) = token else {
        return text.to_owned();
    };
    let basic = t.basic_auth();
    let basic = basic.trim_start_matches("Basic ");
    text.replace(t.expose(), "[redacted]")
        .replace(basic, "[redacted]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_prints() {
        let t = Token::new("ghp_secret123").unwrap();
        assert_eq!(format!("{t}"), "[redacted]");
        assert!(!format!("{t:?}").contains("secret"));
        assert_eq!(t.expose(), "ghp_secret123");
        assert!(Token::new("  ").is_none());
    }

    #[test]
    fn redaction_covers_the_raw_and_basic_forms() {
        let t = Token::new("ghp_secret123").unwrap();
        let basic = t.basic_auth();
        let text = format!("bad ghp_secret123 and {basic}");
        let out = redact(&text, Some(&t));
        assert!(!out.contains("ghp_secret123"), "{out}");
        assert!(!out.contains(basic.trim_start_matches("Basic ")), "{out}");
        assert_eq!(redact("plain", None), "plain");
    }
}
