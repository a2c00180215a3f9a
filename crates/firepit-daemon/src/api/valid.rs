//! Input checks of the API, one function per rule of `docs/api/openapi.yaml`.
//!
//! Each function is the server's side of a `pattern`, `minLength` or
//! `maxLength` in the document (named next to it), so that a request the
//! document allows is never refused as malformed and one it forbids always
//! is (400, before anything reaches a machine). What only the machine can
//! know (a missing file, a name too long for its file system) is not a bad
//! request: the guest's refusals answer 404 or 409 (see [`crate::Error`]).

use std::path::Path;

use firepit_wire::guest::{Command, check_path};

use crate::Error;

fn bad(msg: impl Into<String>) -> Error {
    Error::BadRequest(msg.into())
}

/// `components/schemas/Path`: absolute, no `..` component, no NUL.
pub(crate) fn path(what: &str, p: &str) -> Result<(), Error> {
    check_path(p).map_err(|e| bad(format!("{what}: {e}")))
}

/// `components/schemas/FilePath`: a [`path`] that names a file, so not `/`
/// and not only `/` and `.` components.
pub(crate) fn file_path(p: &str) -> Result<(), Error> {
    path("path", p)?;
    if Path::new(p).file_name().is_none() {
        return Err(bad(format!("path {p:?} names no file")));
    }
    Ok(())
}

/// `components/parameters/cursor` of `GET /v1/sessions`: `CREATED.ID`, the
/// creation time (seconds, digits) and id of the last session a page held.
pub(crate) fn session_cursor(c: &str) -> Result<(i64, &str), Error> {
    let bad_cursor = || bad(format!("cursor {c:?} is not one a page of sessions gave"));
    let (at, id) = c.split_once('.').ok_or_else(bad_cursor)?;
    if !(1..=18).contains(&at.len()) || !at.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_cursor());
    }
    if !crate::sessions::is_valid_id(id) {
        return Err(bad_cursor());
    }
    Ok((at.parse().map_err(|_| bad_cursor())?, id))
}

fn no_nul(what: &str, s: &str) -> Result<(), Error> {
    if s.contains('\0') {
        return Err(bad(format!("{what} contains a NUL byte")));
    }
    Ok(())
}

/// `components/schemas/Command`: a non-empty argv whose program is named,
/// or a shell line; no NUL anywhere.
pub(crate) fn command(c: &Command) -> Result<(), Error> {
    match c {
        Command::Argv(argv) => {
            if argv.first().is_none_or(|p| p.is_empty()) {
                return Err(bad("the command is empty: argv[0] names the program"));
            }
            argv.iter().try_for_each(|a| no_nul("an argument", a))
        }
        Command::Shell(line) => no_nul("the shell line", line),
    }
}

/// `components/schemas/Env`: names without `=` or NUL, values without NUL.
pub(crate) fn env(env: &[(String, String)]) -> Result<(), Error> {
    for (k, v) in env {
        if k.contains('=') {
            return Err(bad(format!("environment variable name {k:?} contains `=`")));
        }
        no_nul("an environment variable name", k)?;
        no_nul("an environment variable value", v)?;
    }
    Ok(())
}

/// The working directory of a command, when given.
pub(crate) fn cwd(cwd: Option<&str>) -> Result<(), Error> {
    cwd.map_or(Ok(()), |c| path("cwd", c))
}

/// `components/schemas/ServiceName`: 1 to 64 characters, no `/`, no NUL.
pub(crate) fn service_name(name: &str) -> Result<(), Error> {
    if !(1..=64).contains(&name.chars().count()) || name.contains(['/', '\0']) {
        return Err(bad(format!(
            "invalid service name {name:?}: use 1 to 64 characters, no `/`"
        )));
    }
    Ok(())
}

/// `components/parameters/pty`: 1 to 64 of letters, digits, `-`, `_`.
pub(crate) fn pty_name(name: &str) -> Result<(), Error> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(bad("a PTY name is 1 to 64 letters, digits, `-` or `_`"));
    }
    Ok(())
}

/// Characters that leave a text blank: `pattern: "[^ \t\n\r]"` in the
/// document. (Rust's `trim` and the regex `\s` disagree at the edges of
/// Unicode; this set is the same for every reader.)
pub(crate) fn blank(s: &str) -> bool {
    s.chars().all(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
}

/// `components/schemas/RepoName`: exactly `owner/name`, each 1 to 100 of
/// letters, digits, `-`, `_`, `.`, neither `.` nor `..`, the name not ending
/// in `.git`. Clients give the name as the forge spells it; the CLI trims
/// what a person types.
pub(crate) fn repo(r: &str) -> Result<(), Error> {
    let part = |s: &str| {
        (1..=100).contains(&s.len())
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    let ok = r
        .split_once('/')
        .is_some_and(|(o, n)| part(o) && part(n) && !n.ends_with(".git"));
    if !ok {
        return Err(bad(format!(
            "{r:?} is not a repository name; give it as owner/name"
        )));
    }
    Ok(())
}

/// `components/schemas/BranchName`: not empty, not starting with `-`, no
/// `..`, no control character, space or any of `~^:?*[\`.
pub(crate) fn branch(b: &str) -> Result<(), Error> {
    if b.is_empty()
        || b.starts_with('-')
        || b.contains("..")
        || b.bytes()
            .any(|c| c.is_ascii_control() || b" ~^:?*[\\".contains(&c))
    {
        return Err(bad(format!("{b:?} is not a branch name")));
    }
    Ok(())
}

/// `components/schemas/ImageName`: what the image store takes as a name.
pub(crate) fn image(name: &str) -> Result<(), Error> {
    firepit_image::recipe::validate_name(name).map_err(|e| bad(e.to_string()))
}

/// The most a session's timeout may be: a year, in seconds.
pub(crate) const MAX_TIMEOUT_SECS: u64 = 365 * 86_400;

/// A session's timeout: 1 second to a year.
pub(crate) fn timeout_secs(t: u64) -> Result<(), Error> {
    if (1..=MAX_TIMEOUT_SECS).contains(&t) {
        Ok(())
    } else {
        Err(bad(format!(
            "a timeout of {t} seconds is out of range: give 1 to {MAX_TIMEOUT_SECS} (a year)"
        )))
    }
}

/// The `mode` of a file write: 3 or 4 octal digits.
pub(crate) fn mode(m: &str) -> Result<u32, Error> {
    if !(3..=4).contains(&m.len()) || !m.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad("mode must be 3 or 4 octal digits, like 644"));
    }
    u32::from_str_radix(m, 8).map_err(|_| bad("mode must be octal"))
}

/// `components/schemas/CheckpointId`: 1 to 40 of `a-z`, `0-9`, `-`, not
/// starting or ending with `-`.
pub(crate) fn checkpoint_id(id: &str) -> Result<(), Error> {
    crate::checkpoints::checkpoint_id(id).map(drop)
}

/// `components/schemas/CreateCheckpoint.name`: at most 200 characters, no control
/// character.
pub(crate) fn checkpoint_name(name: &str) -> Result<(), Error> {
    if name.chars().count() > firepit_machine::MAX_LABEL || name.chars().any(char::is_control) {
        return Err(bad(format!(
            "a checkpoint name is at most {} characters without control characters",
            firepit_machine::MAX_LABEL
        )));
    }
    Ok(())
}

/// The longest session name, in characters.
pub(crate) const MAX_NAME: usize = 64;
/// The most labels a session may have.
pub(crate) const MAX_LABELS: usize = 32;
/// The longest label key, in bytes.
pub(crate) const MAX_LABEL_KEY: usize = 63;
/// The longest label value, in characters.
pub(crate) const MAX_LABEL_VALUE: usize = 128;

/// `components/schemas/SessionName`: 1 to 64 characters, not only spaces,
/// no control character.
pub(crate) fn session_name(name: &str) -> Result<(), Error> {
    let n = name.chars().count();
    if n == 0 || name.trim().is_empty() {
        return Err(bad(
            "a session name must have a character other than a space",
        ));
    }
    if n > MAX_NAME {
        return Err(bad(format!(
            "a session name is at most {MAX_NAME} characters; this one has {n}"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(bad(
            "a session name may not contain control characters (tabs, newlines…)",
        ));
    }
    Ok(())
}

/// `components/schemas/Labels`: at most 32; keys 1 to 63 of `[a-z0-9._-]`
/// starting with a letter or digit; values at most 128 characters, no
/// control character.
pub(crate) fn labels(labels: &std::collections::BTreeMap<String, String>) -> Result<(), Error> {
    if labels.len() > MAX_LABELS {
        return Err(bad(format!(
            "a session has at most {MAX_LABELS} labels; {} given",
            labels.len()
        )));
    }
    for (k, v) in labels {
        label_key(k)?;
        label_value(k, v)?;
    }
    Ok(())
}

/// A label's key (see [`labels`]).
pub(crate) fn label_key(k: &str) -> Result<(), Error> {
    let ok = (1..=MAX_LABEL_KEY).contains(&k.len())
        && k.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && k.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if !ok {
        return Err(bad(format!(
            "label key {k:?} is not valid: 1 to {MAX_LABEL_KEY} of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
        )));
    }
    Ok(())
}

/// A label's value (see [`labels`]).
pub(crate) fn label_value(k: &str, v: &str) -> Result<(), Error> {
    if v.chars().count() > MAX_LABEL_VALUE || v.chars().any(char::is_control) {
        return Err(bad(format!(
            "label {k:?}: a value is at most {MAX_LABEL_VALUE} characters without control characters"
        )));
    }
    Ok(())
}

/// `components/schemas/CreateShare.path`: a local path (`/…`, not `//`,
/// no backslash nor control character), at most 2048 characters.
pub(crate) fn share_path(p: &str) -> Result<(), Error> {
    if !p.starts_with('/')
        || p.starts_with("//")
        || p.contains('\\')
        || p.chars().count() > 2048
        || p.chars().any(char::is_control)
    {
        return Err(bad(format!(
            "share path {p:?} is not a local path: give one like /docs?x=1 (at most 2048 characters)"
        )));
    }
    Ok(())
}

/// `label` of `GET /v1/sessions`: `key=value`.
pub(crate) fn label_filter(f: &str) -> Result<(&str, &str), Error> {
    let (k, v) = f
        .split_once('=')
        .ok_or_else(|| bad(format!("label filter {f:?} is not key=value")))?;
    label_key(k)?;
    label_value(k, v)?;
    Ok((k, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for ok in ["/", "/a", "/a/b.c", "/...", "/a/./b"] {
            path("path", ok).unwrap();
        }
        for bad in ["", "a", "/a/../b", "/..", "/a\0"] {
            assert!(path("path", bad).is_err(), "{bad:?}");
        }
        for ok in ["/a", "/a/", "/.x", "/..."] {
            file_path(ok).unwrap();
        }
        for bad in ["/", "//", "/.", "/./", "/./."] {
            assert!(file_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn commands_and_env() {
        command(&Command::Argv(vec!["ls".into(), String::new()])).unwrap();
        command(&Command::Shell(String::new())).unwrap();
        for bad in [
            Command::Argv(vec![]),
            Command::Argv(vec![String::new()]),
            Command::Argv(vec!["a".into(), "b\0".into()]),
            Command::Shell("\0".into()),
        ] {
            assert!(command(&bad).is_err(), "{bad:?}");
        }
        env(&[(String::new(), String::new()), ("A".into(), "=b".into())]).unwrap();
        assert!(env(&[("A=B".into(), String::new())]).is_err());
        assert!(env(&[("A".into(), "\0".into())]).is_err());
    }

    #[test]
    fn names() {
        service_name(&"é".repeat(64)).unwrap();
        assert!(service_name(&"é".repeat(65)).is_err());
        assert!(service_name("a/b").is_err());
        assert!(service_name("").is_err());
        pty_name("main").unwrap();
        assert!(pty_name("a.b").is_err());
        for ok in ["o/r", "a-b/c.d_e", "x/...", "x/a.gitx"] {
            repo(ok).unwrap();
        }
        for bad in [
            "", "o", "o/", "/r", "o/r/x", "./r", "o/..", " o/r", "o/r.git",
        ] {
            assert!(repo(bad).is_err(), "{bad:?}");
        }
        branch("feature/x").unwrap();
        for bad in ["", "-x", "a..b", "a b", "a\u{7f}", "a:b"] {
            assert!(branch(bad).is_err(), "{bad:?}");
        }
        assert!(blank(" \t\r\n"));
        assert!(!blank("\u{a0}"));
        assert_eq!(mode("0755").unwrap(), 0o755);
        checkpoint_id("cp-abc1").unwrap();
        for bad in ["", "-a", "a-", "A", "a/b", "a.b"] {
            assert!(checkpoint_id(bad).is_err(), "{bad:?}");
        }
        checkpoint_name("before the migration").unwrap();
        assert!(checkpoint_name("a\nb").is_err());
        assert!(checkpoint_name(&"x".repeat(201)).is_err());
        checkpoint_name(&"é".repeat(200)).unwrap();
        for bad in ["7", "+77", "888", "77777"] {
            assert!(mode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn session_cursors() {
        assert_eq!(
            session_cursor("1764000000.ab-3").unwrap(),
            (1764000000, "ab-3")
        );
        assert_eq!(session_cursor("0.a").unwrap(), (0, "a"));
        for bad in [
            "",
            ".",
            "1.",
            ".a",
            "a.b",
            "-1.a",
            "+1.a",
            "1.A",
            "1.a.b",
            "1234567890123456789.a",
            &format!("1.{}", "a".repeat(33)),
        ] {
            assert!(session_cursor(bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod label_tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        for ok in ["a", "web app", "Ünïcode ✓", &"x".repeat(MAX_NAME)] {
            session_name(ok).unwrap();
        }
        for no in ["", "   ", "a\nb", "tab\there", &"x".repeat(MAX_NAME + 1)] {
            assert!(session_name(no).is_err(), "{no:?}");
        }
        for ok in ["team", "a.b-c_d", "9x", &"k".repeat(MAX_LABEL_KEY)] {
            label_key(ok).unwrap();
        }
        for no in [
            "",
            "Team",
            "-a",
            ".a",
            "a b",
            "a=b",
            "é",
            &"k".repeat(MAX_LABEL_KEY + 1),
        ] {
            assert!(label_key(no).is_err(), "{no:?}");
        }
        label_value("k", "").unwrap();
        label_value("k", "any text, even = and spaces").unwrap();
        assert!(label_value("k", "a\u{7}").is_err());
        assert!(label_value("k", &"v".repeat(MAX_LABEL_VALUE + 1)).is_err());
        let many: std::collections::BTreeMap<String, String> = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert!(labels(&many).is_err());
        assert_eq!(label_filter("team=web").unwrap(), ("team", "web"));
        assert_eq!(label_filter("team=").unwrap(), ("team", ""));
        assert_eq!(label_filter("a=b=c").unwrap(), ("a", "b=c"));
        assert!(label_filter("team").is_err());
        assert!(label_filter("Team=x").is_err());
        share_path("/").unwrap();
        share_path("/docs?x=1#y").unwrap();
        for no in ["", "docs", "//evil.example", "/\\evil", "/a\nb"] {
            assert!(share_path(no).is_err(), "{no:?}");
        }
    }
}
