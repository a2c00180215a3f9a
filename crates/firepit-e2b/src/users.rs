//! envd's users: the SDK's `user` argument of commands, PTYs and files.
//!
//! E2B's sandboxes have two users, `root` and `user`; so do firepit's, as
//! far as the door goes. The SDK names one as `Authorization: Basic
//! base64("<name>:")` on Connect calls and as `?username=` on `/files`; when
//! it names none (it sends none for envd 0.4 and later), the door runs as
//! root, firepit's default (E2B's is `user`).
//!
//! `user` is a real account in the machine: the door looks for it in the
//! image's `/etc/passwd` the first time a sandbox is used as `user` and, when
//! the image has none, makes it (`useradd --create-home`, or busybox's
//! `adduser -D`), home directory included. An image with neither tool, or
//! without `/bin/sh`, gets a clear refusal rather than root in disguise.
//! What is found is kept per sandbox while its guest connection lives.
//!
//! As `user`, a command or PTY runs through the guest binary's `--run-as`
//! (`/.firepit/guest --run-as user -- …`: setgroups, setgid, setuid, `HOME`
//! from the account, then exec, so the pid is the command's), with `USER`
//! and `LOGNAME` set and the account's home as the default directory;
//! relative paths start at that home. A file written or a directory made as
//! `user` is written by the guest (as envd does, as root) and then given to
//! `user` (`chown`), with every directory the write made for it; reading,
//! listing, moving and removing are the guest's own, as root.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::HeaderMap;
use base64::Engine;
use firepit_guest_client::GuestClient;
use firepit_wire::guest::{Command, ExecRequest};

use crate::Error;

/// The name of E2B's regular user.
pub const USER: &str = "user";

/// Where the guest binary is in every machine.
const GUEST: &str = "/.firepit/guest";

/// Output kept of the account script (its `/etc/passwd` line, or why not).
const SCRIPT_OUTPUT: usize = 4096;

/// Finds `user` or makes it; prints its `/etc/passwd` line last.
const ENSURE: &str = r#"set -e
if ! grep -q '^user:' /etc/passwd; then
  sh=/bin/sh; [ -x /bin/bash ] && sh=/bin/bash
  if command -v useradd >/dev/null 2>&1; then
    useradd --create-home --shell "$sh" user >&2
  elif command -v adduser >/dev/null 2>&1; then
    adduser -D -s "$sh" user >&2
  else
    echo "the image has neither useradd nor adduser to make it with" >&2
    exit 1
  fi
fi
line=$(grep '^user:' /etc/passwd | head -n 1)
home=$(printf '%s' "$line" | cut -d: -f6)
if [ -n "$home" ] && [ ! -d "$home" ]; then
  mkdir -p "$home"
  chown "$(printf '%s' "$line" | cut -d: -f3):$(printf '%s' "$line" | cut -d: -f4)" "$home"
fi
printf '%s\n' "$line"
"#;

/// Who an envd call acts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// root (firepit's default).
    Root,
    /// E2B's regular user, `user`.
    User,
}

impl Who {
    /// The user a name means; `None` and `""` are root.
    pub fn named(name: Option<&str>) -> Result<Who, Error> {
        match name.unwrap_or("") {
            "" | "root" => Ok(Who::Root),
            USER => Ok(Who::User),
            other => Err(Error::BadRequest(format!(
                "sandboxes have the users root and user; {:?} is neither",
                other.chars().take(64).collect::<String>()
            ))),
        }
    }

    /// The user a Connect call names in `Authorization: Basic`.
    pub fn of_headers(headers: &HeaderMap) -> Result<Who, Error> {
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Ok(Who::Root);
        };
        let bad = || {
            Error::BadRequest(
                "the Authorization header is not `Basic base64(<user>:)` naming root or user"
                    .into(),
            )
        };
        let text = value.to_str().map_err(|_| bad())?;
        let Some(b64) = text
            .strip_prefix("Basic ")
            .or_else(|| text.strip_prefix("basic "))
        else {
            return Err(bad());
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| bad())?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let name = raw.split_once(':').map_or(raw.as_str(), |(n, _)| n);
        Who::named(Some(name))
    }
}

/// The `user` account of one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its uid in the machine.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// Its home directory (absolute).
    pub home: String,
}

impl Account {
    /// An account from its `/etc/passwd` line.
    fn parse(line: &str) -> Option<Account> {
        let f: Vec<&str> = line.trim_end().split(':').collect();
        if f.len() < 7 || f[0] != USER {
            return None;
        }
        let home = f[5];
        Some(Account {
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: if home.starts_with('/') && !home.contains("/..") {
                home.trim_end_matches('/').to_owned()
            } else {
                "/".to_owned()
            },
        })
        .map(|mut a| {
            if a.home.is_empty() {
                a.home = "/".into();
            }
            a
        })
    }

    /// `argv` run as this account, through the guest's `--run-as`.
    pub fn wrap(&self, argv: Vec<String>) -> Vec<String> {
        let mut out = vec![
            GUEST.to_owned(),
            "--run-as".to_owned(),
            USER.to_owned(),
            "--".to_owned(),
        ];
        out.extend(argv);
        out
    }

    /// The environment a process of this account starts with (before the
    /// sandbox's and the call's own).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("USER".into(), USER.into()),
            ("LOGNAME".into(), USER.into()),
            ("HOME".into(), self.home.clone()),
        ]
    }
}

/// The `user` accounts found so far, by sandbox, with the guest connection
/// each was found through: a machine that stopped, started again or had a
/// checkpoint restored has another connection, so its account is looked
/// up again (a restored `/etc/passwd` may lack it).
#[derive(Default)]
pub struct Accounts(Mutex<HashMap<String, (Account, GuestClient)>>);

impl Accounts {
    /// Sandbox `id`'s `user`, found or made on first use.
    pub async fn get(&self, id: &str, guest: &GuestClient) -> Result<Account, Error> {
        {
            let mut map = self.0.lock().expect("accounts");
            match map.get(id) {
                Some((a, g)) if !g.is_closed() => return Ok(a.clone()),
                Some(_) => {
                    map.remove(id);
                }
                None => {}
            }
        }
        let out = guest
            .exec(ExecRequest {
                command: Command::Argv(vec!["/bin/sh".into(), "-c".into(), ENSURE.into()]),
                env: Vec::new(),
                cwd: Some("/".into()),
                stdin: false,
                timeout_ms: Some(60_000),
            })
            .await
            .map_err(|e| refused(&e.to_string()))?
            .output(SCRIPT_OUTPUT)
            .await?;
        if !out.status.success() {
            return Err(refused(out.stderr.text().trim()));
        }
        let stdout = out.stdout.text();
        let account = stdout
            .lines()
            .rev()
            .find_map(Account::parse)
            .ok_or_else(|| refused("its /etc/passwd line could not be read"))?;
        self.0
            .lock()
            .expect("accounts")
            .insert(id.to_owned(), (account.clone(), guest.clone()));
        Ok(account)
    }

    /// Forgets sandbox `id` (it stopped or was killed).
    pub fn forget(&self, id: &str) {
        self.0.lock().expect("accounts").remove(id);
    }
}

fn refused(why: &str) -> Error {
    Error::Conflict(format!(
        "the sandbox has no account `user` and it could not be made ({}); \
         run as root, or add a `user` account to the image",
        why.chars().take(300).collect::<String>()
    ))
}

/// The directories `create_parents` would make for `path`: its ancestors
/// that do not exist yet, outermost first.
pub async fn missing_parents(guest: &GuestClient, path: &str) -> Vec<String> {
    let mut missing = Vec::new();
    let mut dir = path;
    while let Some((parent, _)) = dir.rsplit_once('/') {
        if parent.is_empty() {
            break;
        }
        match guest.stat(parent).await {
            Err(e) if e.kind() == firepit_wire::guest::ErrorKind::NotFound => {
                missing.push(parent.to_owned());
            }
            _ => break,
        }
        dir = parent;
    }
    missing.reverse();
    missing
}

/// Gives `paths` (not following symbolic links) to `account`.
pub async fn chown(guest: &GuestClient, account: &Account, paths: &[String]) -> Result<(), Error> {
    if paths.is_empty() {
        return Ok(());
    }
    let mut argv = vec![
        "chown".to_owned(),
        "-h".to_owned(),
        format!("{}:{}", account.uid, account.gid),
        "--".to_owned(),
    ];
    argv.extend(paths.iter().cloned());
    let out = guest
        .exec(ExecRequest {
            command: Command::Argv(argv),
            env: Vec::new(),
            cwd: Some("/".into()),
            stdin: false,
            timeout_ms: Some(60_000),
        })
        .await?
        .output(SCRIPT_OUTPUT)
        .await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Conflict(format!(
            "the file was written but could not be given to user: {}",
            out.stderr.text().trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_headers() {
        assert_eq!(Who::named(None).unwrap(), Who::Root);
        assert_eq!(Who::named(Some("root")).unwrap(), Who::Root);
        assert_eq!(Who::named(Some("user")).unwrap(), Who::User);
        assert!(Who::named(Some("admin")).is_err());
        let mut h = HeaderMap::new();
        assert_eq!(Who::of_headers(&h).unwrap(), Who::Root);
        // base64("user:")
        h.insert("authorization", "Basic dXNlcjo=".parse().unwrap());
        assert_eq!(Who::of_headers(&h).unwrap(), Who::User);
        // base64("root:")
        h.insert("authorization", "Basic cm9vdDo=".parse().unwrap());
        assert_eq!(Who::of_headers(&h).unwrap(), Who::Root);
        h.insert("authorization", "Bearer x".parse().unwrap());
        assert!(Who::of_headers(&h).is_err());
        h.insert("authorization", "Basic !!!".parse().unwrap());
        assert!(Who::of_headers(&h).is_err());
    }

    #[test]
    fn passwd_lines() {
        assert_eq!(
            Account::parse("user:x:1000:1000:,,,:/home/user:/bin/bash\n"),
            Some(Account {
                uid: 1000,
                gid: 1000,
                home: "/home/user".into()
            })
        );
        assert_eq!(Account::parse("root:x:0:0:root:/root:/bin/bash"), None);
        assert_eq!(Account::parse("user:x:a:1000::/home/user:/bin/sh"), None);
        assert_eq!(
            Account::parse("user:x:5:6::../x:/bin/sh").unwrap().home,
            "/"
        );
    }

    #[test]
    fn commands_run_through_run_as() {
        let a = Account {
            uid: 1000,
            gid: 1000,
            home: "/home/user".into(),
        };
        assert_eq!(
            a.wrap(vec!["ls".into(), "-l".into()]),
            ["/.firepit/guest", "--run-as", "user", "--", "ls", "-l"]
        );
    }
}
