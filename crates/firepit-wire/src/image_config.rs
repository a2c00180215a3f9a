//! How processes run in machines of an image: the part of an OCI image's config that firepit
//! carries into its machines, written into the image at [`PATH`] when the image is made
//! (pulled, imported, built) and read by the guest when it starts as PID 1.
//!
//! The file lives in the machine's own tree, so a machine may change it; it only ever
//! affects that machine's processes, and the guest reads it as hostile input: at most
//! [`MAX_BYTES`], entries that are not `NAME=value` with a sane name are skipped.

use serde::{Deserialize, Serialize};

/// Where the file is inside an image's tree.
pub const PATH: &str = "/.firepit/config.json";

/// Where the guest binary is in every machine; `GUEST --run-as USER -- PROGRAM ARGS…` runs a
/// program as an image's user.
pub const GUEST: &str = "/.firepit/guest";

/// The largest file the guest reads.
pub const MAX_BYTES: u64 = 256 * 1024;

/// An image's run configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `NAME=value` entries, set in the guest's environment (so in every exec, pty and
    /// service) over the guest's defaults.
    #[serde(default)]
    pub env: Vec<String>,
    /// The default working directory of execs, ptys and services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The user the image's entrypoint runs as (`name`, `uid`, `uid:gid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    /// The command (the entrypoint's arguments when there is one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    /// Ports the image says it serves (`8080/tcp`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed_ports: Vec<String>,
}

impl ImageConfig {
    /// The `(name, value)` pairs of [`ImageConfig::env`] that are well formed: a name of
    /// letters, digits and `_`, not starting with a digit, and no NUL anywhere.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .filter_map(|e| {
                let (k, v) = e.split_once('=')?;
                let ok = !k.is_empty()
                    && k.len() <= 256
                    && !k.as_bytes()[0].is_ascii_digit()
                    && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    && !v.contains('\0');
                ok.then(|| (k.to_owned(), v.to_owned()))
            })
            .collect()
    }

    /// The command line the image runs: entrypoint then cmd.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint.iter().chain(&self.cmd).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_well_formed_env_only() {
        let c = ImageConfig {
            env: vec![
                "PATH=/usr/local/bin:/usr/bin".into(),
                "EMPTY=".into(),
                "A=b=c".into(),
                "1BAD=x".into(),
                "NOEQUALS".into(),
                "BAD-NAME=x".into(),
                "=x".into(),
            ],
            ..ImageConfig::default()
        };
        assert_eq!(
            c.env_pairs(),
            [
                ("PATH".to_owned(), "/usr/local/bin:/usr/bin".to_owned()),
                ("EMPTY".to_owned(), String::new()),
                ("A".to_owned(), "b=c".to_owned()),
            ]
        );
        let parsed: ImageConfig = serde_json::from_str(r#"{"env":["X=1"],"cmd":["sh"]}"#).unwrap();
        assert_eq!(parsed.argv(), ["sh"]);
    }
}
