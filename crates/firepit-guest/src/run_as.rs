//! `firepit-guest --run-as USER -- PROGRAM ARGS…`: the guest binary (at `/.firepit/guest` in
//! every machine, whatever the image has) as the tool that runs a program as an image's
//! `USER`, for images without `su` or `setpriv`: `USER` is `name`, `uid`, `name:group` or
//! `uid:gid`, names looked up in the image's `/etc/passwd` and `/etc/group`; a uid that has
//! no entry runs with gid 0, as Docker does. `HOME` is set from the entry when there is one.

use std::ffi::CString;
use std::process::ExitCode;

/// The argument that selects this mode.
pub const ARG: &str = "--run-as";

fn lookup(file: &str, name: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .map(|l| l.split(':').map(str::to_owned).collect::<Vec<_>>())
        .find(|f| {
            f.first().map(String::as_str) == Some(name)
                || f.get(2).map(String::as_str) == Some(name)
        })
}

/// Uid, gid and home of `spec`.
pub fn resolve(spec: &str) -> Result<(u32, u32, Option<String>), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = lookup("/etc/passwd", user);
    let uid = match user.parse::<u32>() {
        Ok(n) => n,
        Err(_) => entry
            .as_ref()
            .and_then(|f| f.get(2)?.parse().ok())
            .ok_or_else(|| format!("no user {user:?} in /etc/passwd"))?,
    };
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup("/etc/group", g)
                .and_then(|f| f.get(2)?.parse().ok())
                .ok_or_else(|| format!("no group {g:?} in /etc/group"))?,
        },
        None => entry
            .as_ref()
            .and_then(|f| f.get(3)?.parse().ok())
            .unwrap_or(0),
    };
    let home = entry
        .and_then(|f| f.get(5).cloned())
        .filter(|h| !h.is_empty());
    Ok((uid, gid, home))
}

/// Runs the program as the user; returns only on failure.
pub fn main(args: &[String]) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("firepit-guest {ARG}: {msg}");
        ExitCode::from(127)
    };
    let (Some(spec), Some("--")) = (args.first(), args.get(1).map(String::as_str)) else {
        return fail("usage: --run-as USER -- PROGRAM ARGS…".into());
    };
    let argv = &args[2..];
    if argv.is_empty() {
        return fail("no program to run".into());
    }
    let (uid, gid, home) = match resolve(spec) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let gid_t = nix::unistd::Gid::from_raw(gid);
    if let Err(e) = nix::unistd::setgroups(&[gid_t])
        .and_then(|()| nix::unistd::setgid(gid_t))
        .and_then(|()| nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)))
    {
        return fail(format!("becoming {uid}:{gid}: {e}"));
    }
    if let Some(home) = home {
        // SAFETY: single-threaded: this mode starts no threads.
        unsafe { std::env::set_var("HOME", home) };
    }
    let Ok(cargs) = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
    else {
        return fail("an argument holds a NUL".into());
    };
    let e = nix::unistd::execvp(&cargs[0], &cargs).unwrap_err();
    fail(format!("running {}: {e}", argv[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_users_like_docker() {
        assert_eq!(resolve("root").unwrap(), (0, 0, Some("/root".into())));
        assert_eq!(resolve("0:5").unwrap().1, 5);
        assert_eq!(resolve("4242424").unwrap(), (4_242_424, 0, None));
        assert!(resolve("no-such-user-here").is_err());
        assert!(resolve("root:no-such-group-here").is_err());
    }
}
