//! Building an image tree: choose the archive, run mmdebstrap (or debootstrap) in a private
//! mount and PID namespace, report its progress, then finish the tree for machines.
//!
//! The builder runs as `unshare --mount --propagation private --pid --fork --kill-child`, with
//! `PR_SET_PDEATHSIG=SIGKILL` on `unshare`: if the build's caller dies (Ctrl-C, `kill -9`), the
//! whole builder process tree dies with it and the `/proc`, `/sys` and `/dev` mounts it made
//! inside the tree vanish with its mount namespace, so the half-built tree can be deleted
//! safely by the next build or list.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};
use crate::progress::{self, Phase, Progress};
use crate::recipe::Recipe;
use crate::sources::{self, AptEntry};

/// How to build: where packages come from and how owners are shifted. The defaults read the
/// host's apt sources (`/etc/apt`) and `/etc/os-release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// The archive to build from instead of the host's main archive. When set, the image is
    /// built from this mirror alone and its apt sources list only it.
    pub mirror: Option<String>,
    /// The suite instead of the host's.
    pub suite: Option<String>,
    /// The Debian architecture instead of the host's.
    pub arch: Option<String>,
    /// The first id outside that a machine's id 0 maps to (0, or at least 65536).
    pub uid_base: u32,
    /// The apt configuration directory whose sources are read.
    pub apt_dir: PathBuf,
    /// The os-release file whose `VERSION_CODENAME` picks the main archive.
    pub os_release: PathBuf,
    /// Set in the builder's environment besides the caller's own: the
    /// daemon's proxy (`HTTP_PROXY`…, which apt honours).
    pub env: Vec<(String, String)>,
    /// A CA bundle (PEM) apt checks HTTPS archives against instead of the
    /// host's store: the host's bundle plus the CAs `firepit up --ca-file`
    /// adds. mmdebstrap only; the image keeps no trace of it.
    pub ca_bundle: Option<PathBuf>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            mirror: None,
            suite: None,
            arch: None,
            uid_base: crate::DEFAULT_UID_BASE,
            apt_dir: PathBuf::from("/etc/apt"),
            os_release: PathBuf::from("/etc/os-release"),
            env: Vec::new(),
            ca_bundle: None,
        }
    }
}

/// Where the packages come from: the main archive, and every source the image gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Archive {
    pub main: AptEntry,
    pub all: Vec<AptEntry>,
}

/// Resolve the archive from the options and the host's apt sources. The suite is the
/// build's (`opts.suite`), else the recipe's (`recipe_suite`), else the host's; an alias such
/// as `stable` is turned into today's codename by `lookup(archive URI, alias)`.
pub(crate) fn resolve_archive(
    opts: &BuildOptions,
    recipe_suite: Option<&str>,
    lookup: &mut dyn FnMut(&str, &str) -> Result<String>,
) -> Result<Archive> {
    let host = sources::read_dir(&opts.apt_dir)?;
    let codename = sources::codename(&opts.os_release)?;
    let wanted = opts.suite.as_deref().or(recipe_suite);
    let prefer = wanted.filter(|s| !sources::is_alias(s));
    let host_main = sources::select_main(&host, prefer.or(codename.as_deref()))
        .or_else(|| sources::select_main(&host, codename.as_deref()));
    let no_source = || Error::NoAptSource {
        apt_dir: opts.apt_dir.clone(),
    };
    let uri = match (&opts.mirror, host_main) {
        (Some(mirror), _) => mirror.clone(),
        (None, Some(m)) => m.uri.clone(),
        (None, None) => return Err(no_source()),
    };
    let suite = match wanted {
        Some(alias) if sources::is_alias(alias) => lookup(&uri, alias)?,
        Some(suite) => suite.to_owned(),
        None => host_main
            .map(|m| m.suite.clone())
            .or(codename)
            .ok_or_else(no_source)?,
    };
    if let Some(mirror) = &opts.mirror {
        let main = AptEntry {
            uri: mirror.clone(),
            suite,
            components: host_main.map_or_else(|| vec!["main".into()], |m| m.components.clone()),
            signed_by: host_main
                .filter(|m| &m.uri == mirror)
                .and_then(|m| m.signed_by.clone()),
        };
        return Ok(Archive {
            all: vec![main.clone()],
            main,
        });
    }
    let host_main = host_main.ok_or_else(no_source)?;
    let main = AptEntry {
        suite,
        ..host_main.clone()
    };
    Ok(Archive {
        all: sources::distribution_for(&host, &main, &host_main.suite),
        main,
    })
}

/// The codename that `alias` (such as `stable`) names in the archive at `uri` today, read
/// from its `dists/<alias>/InRelease` (or `Release`) with apt's own downloader, so the host's
/// apt proxy and TLS settings apply. `scratch` is a directory for the downloaded file.
///
/// The file's signature is not checked here: the name only picks the suite, and the builder
/// checks the signature of that suite's own `Release` against the keyring before it uses it.
pub(crate) fn lookup_alias(uri: &str, alias: &str, scratch: &Path) -> Result<String> {
    let helper = ["/usr/lib/apt/apt-helper", "/usr/libexec/apt/apt-helper"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file());
    let fail = |reason: String| Error::SuiteAlias {
        alias: alias.to_owned(),
        uri: uri.to_owned(),
        reason,
    };
    let Some(helper) = helper else {
        return Err(fail("apt's apt-helper is not installed".into()));
    };
    let mut last = String::new();
    for file in ["InRelease", "Release"] {
        let url = format!("{}/dists/{alias}/{file}", uri.trim_end_matches('/'));
        let dest = scratch.join(format!("{alias}-{file}"));
        let out = Command::new(helper)
            .args(["-o", "APT::Sandbox::User=root", "download-file"])
            .arg(&url)
            .arg(&dest)
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .output()
            .ctx("running", helper)?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr);
            last = text
                .lines()
                .rfind(|l| l.starts_with("E:"))
                .unwrap_or("apt-helper failed")
                .to_owned();
            continue;
        }
        let text = std::fs::read(&dest).ctx("reading", &dest)?;
        let _ = std::fs::remove_file(&dest);
        return sources::release_codename(&String::from_utf8_lossy(&text))
            .ok_or_else(|| fail(format!("{url} names no plain codename")));
    }
    Err(fail(last))
}

/// The program that builds trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tool {
    Mmdebstrap(PathBuf),
    Debootstrap(PathBuf),
}

impl Tool {
    pub(crate) fn find() -> Result<Tool> {
        if let Some(p) = which("mmdebstrap") {
            return Ok(Tool::Mmdebstrap(p));
        }
        which("debootstrap")
            .map(Tool::Debootstrap)
            .ok_or(Error::NoBuilder)
    }

    fn path(&self) -> &Path {
        match self {
            Tool::Mmdebstrap(p) | Tool::Debootstrap(p) => p,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Tool::Mmdebstrap(_) => "mmdebstrap",
            Tool::Debootstrap(_) => "debootstrap",
        }
    }

    /// `mmdebstrap 1.3.5`, or the bare name if `--version` says nothing useful.
    pub(crate) fn version(&self) -> String {
        Command::new(self.path())
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.lines().next().map(|l| l.trim().to_owned()))
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| self.name().to_owned())
    }

    /// The builder's arguments for a recipe.
    pub(crate) fn args(
        &self,
        recipe: &Recipe,
        archive: &Archive,
        arch: &str,
        target: &Path,
    ) -> Vec<String> {
        let include = format!("--include={}", recipe.packages.join(","));
        let variant = format!("--variant={}", recipe.variant);
        let suite = archive.main.suite.clone();
        let target = target.display().to_string();
        match self {
            Tool::Mmdebstrap(_) => {
                let mut a = vec![
                    "--mode=root".into(),
                    "--format=directory".into(),
                    variant,
                    include,
                ];
                a.push(format!("--architectures={arch}"));
                if recipe.keep_apt_lists {
                    a.push("--skip=cleanup/apt/lists".into());
                }
                // apt's and dpkg's own lines, so a long install shows each package.
                a.push("--verbose".into());
                a.extend([suite, target]);
                a.extend(archive.all.iter().map(AptEntry::one_line));
                a
            }
            Tool::Debootstrap(_) => {
                let mut a = vec![variant, include, format!("--arch={arch}")];
                a.push(format!(
                    "--components={}",
                    archive.main.components.join(",")
                ));
                if let Some(key) = archive
                    .main
                    .signed_by
                    .as_deref()
                    .filter(|k| k.starts_with('/'))
                {
                    a.push(format!("--keyring={key}"));
                }
                a.extend([suite, target, archive.main.uri.clone()]);
                a
            }
        }
    }
}

/// `args` with the options that make the builder's apt trust
/// `opts.ca_bundle`: mmdebstrap's `--aptopt` (which it also writes into the
/// tree's `/etc/apt/apt.conf.d/99mmdebstrap`, so a customize hook takes that
/// file out again: machines must not look for a host path). Options go
/// first, before the positional arguments.
pub(crate) fn with_trust(tool: &Tool, opts: &BuildOptions, args: Vec<String>) -> Vec<String> {
    let Some(bundle) = &opts.ca_bundle else {
        return args;
    };
    match tool {
        Tool::Mmdebstrap(_) => {
            let mut a = vec![
                format!("--aptopt=Acquire::https::CaInfo \"{}\"", bundle.display()),
                "--customize-hook=rm -f \"$1/etc/apt/apt.conf.d/99mmdebstrap\"".to_owned(),
            ];
            a.extend(args);
            a
        }
        // debootstrap fetches with wget and takes no CA option.
        Tool::Debootstrap(_) => args,
    }
}

pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The Debian architecture of the host.
pub(crate) fn host_arch() -> String {
    Command::new("dpkg")
        .arg("--print-architecture")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            match std::env::consts::ARCH {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                "x86" => "i386",
                "powerpc64" => "ppc64el",
                other => other,
            }
            .to_owned()
        })
}

/// Run the builder into `target` (which must not exist yet), reporting progress.
pub(crate) fn run_tool(
    tool: &Tool,
    args: &[String],
    env: &[(String, String)],
    started: Instant,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let mut cmd = match which("unshare") {
        Some(unshare) => {
            let mut c = Command::new(unshare);
            c.args([
                "--mount",
                "--propagation",
                "private",
                "--pid",
                "--fork",
                "--kill-child",
                "--",
            ]);
            c.arg(tool.path());
            c
        }
        None => Command::new(tool.path()),
    };
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("LC_ALL", "C.UTF-8")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::null());
    // O_CLOEXEC: a concurrent build's child must not inherit this pipe.
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::io("creating a pipe", "", e.into()))?;
    let write2 = write.try_clone().ctx("duplicating a pipe", "")?;
    cmd.stdout(Stdio::from(write)).stderr(Stdio::from(write2));
    // SAFETY: prctl and close_range are async-signal-safe and touch no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            // The builder's shell scripts (dash) cannot redirect fds above 9, and mmdebstrap
            // hands them the next free fd: start it with nothing but 0, 1 and 2 open.
            libc::syscall(libc::SYS_close_range, 3, libc::c_uint::MAX, 0);
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().ctx("starting", tool.path())?;
    drop(cmd); // closes our copies of the pipe's write end

    let mut tail: VecDeque<String> = VecDeque::new();
    let mut phase = Phase::Prepare;
    let mut apt = AptProgress::default();
    let mut reader = BufReader::new(std::fs::File::from(read));
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("reading the output of", tool.path(), e)),
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end();
        if tail.len() == 40 {
            tail.pop_front();
        }
        tail.push_back(line.to_owned());
        // debootstrap says a line per package: report only when its phase changes.
        let parsed = progress::parse_line(line);
        if let Some((p, msg)) = parsed.filter(|(p, _)| *p != phase || tool.name() == "mmdebstrap") {
            phase = p;
            apt.last = Some(started.elapsed());
            progress(Progress {
                phase,
                message: msg.to_owned(),
                elapsed: started.elapsed(),
            });
        } else if let Some(line) = progress::parse_apt_line(line)
            && let Some((p, msg)) = apt.step(line, started.elapsed())
        {
            phase = p;
            progress(Progress {
                phase,
                message: msg,
                elapsed: started.elapsed(),
            });
        }
    }
    let status = child.wait().ctx("waiting for", tool.path())?;
    if !status.success() {
        return Err(Error::BuilderFailed {
            tool: tool.name().to_owned(),
            status: status.to_string(),
            tail: Vec::from(tail).join("\n"),
        });
    }
    Ok(())
}

/// How often a long apt step reports at most (a line per report where standard error is
/// not a terminal).
const APT_REPORT_EVERY: Duration = Duration::from_secs(3);

/// Counts of an apt step in the builder's output, reported at most every
/// [`APT_REPORT_EVERY`]: `downloading nodejs (120 of 912)`, `setting up 300 of 912 packages`.
#[derive(Debug, Default)]
struct AptProgress {
    planned: usize,
    got: usize,
    unpacked: usize,
    set_up: usize,
    last: Option<Duration>,
}

impl AptProgress {
    fn step(&mut self, line: progress::AptLine<'_>, now: Duration) -> Option<(Phase, String)> {
        use progress::AptLine;
        let of = |n: usize, planned: usize| {
            if planned > 0 {
                format!("{n} of {planned}")
            } else {
                n.to_string()
            }
        };
        let (phase, message) = match line {
            AptLine::Planned(n) => {
                *self = AptProgress {
                    planned: n,
                    last: self.last,
                    ..AptProgress::default()
                };
                return None;
            }
            AptLine::Get(p) => {
                self.got += 1;
                (
                    Phase::Download,
                    format!("downloading {p} ({})", of(self.got, self.planned)),
                )
            }
            AptLine::Unpacking(p) => {
                self.unpacked += 1;
                (
                    Phase::Extract,
                    format!("unpacking {p} ({})", of(self.unpacked, self.planned)),
                )
            }
            AptLine::SettingUp(p) => {
                self.set_up += 1;
                (
                    Phase::Install,
                    format!("setting up {p} ({})", of(self.set_up, self.planned)),
                )
            }
        };
        if self
            .last
            .is_some_and(|t| now.saturating_sub(t) < APT_REPORT_EVERY)
        {
            return None;
        }
        self.last = Some(now);
        Some((phase, message))
    }
}

/// The finishing touches, done as the host's root before the shift: hostname and hosts,
/// `/root`, `/tmp` and `/workspace`, apt configuration and sources, no apt caches.
pub(crate) fn finalize(rootfs: &Path, archive: &Archive, keep_apt_lists: bool) -> Result<()> {
    let write = |rel: &str, text: &str| {
        let p = rootfs.join(rel);
        std::fs::write(&p, text).ctx("writing", p)
    };
    write("etc/hostname", "firepit\n")?;
    write(
        "etc/hosts",
        "127.0.0.1\tlocalhost\n127.0.1.1\tfirepit\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    )?;
    for (rel, mode) in [("root", 0o700), ("tmp", 0o1777), ("workspace", 0o755)] {
        let p = rootfs.join(rel);
        std::fs::create_dir_all(&p).ctx("creating", &p)?;
        std::os::unix::fs::lchown(&p, Some(0), Some(0)).ctx("changing the owner of", &p)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).ctx("chmod", &p)?;
    }

    // apt drops privileges to `_apt` for downloads, which fails in some sandboxes.
    std::fs::create_dir_all(rootfs.join("etc/apt/apt.conf.d"))
        .ctx("creating", rootfs.join("etc/apt"))?;
    write(
        "etc/apt/apt.conf.d/99firepit",
        "// Written by firepit.\nAPT::Sandbox::User \"root\";\n",
    )?;

    // The host's sources for this distribution, and the keyrings they name.
    std::fs::create_dir_all(rootfs.join("etc/apt/sources.list.d"))
        .ctx("creating", rootfs.join("etc/apt"))?;
    write(
        "etc/apt/sources.list.d/debian.sources",
        &sources::render_deb822(&archive.all),
    )?;
    let list = rootfs.join("etc/apt/sources.list");
    match std::fs::remove_file(&list) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io("removing", list, e));
        }
        _ => {}
    }
    for key in archive.all.iter().filter_map(|e| e.signed_by.as_deref()) {
        let host = Path::new(key);
        if !key.starts_with('/') || key.contains('\n') || !host.is_file() {
            continue;
        }
        let inside = rootfs.join(key.trim_start_matches('/'));
        if !inside.exists() {
            if let Some(parent) = inside.parent() {
                std::fs::create_dir_all(parent).ctx("creating", parent)?;
            }
            std::fs::copy(host, &inside).ctx("copying a keyring to", &inside)?;
        }
    }

    // apt caches: downloaded packages and binary caches always go; lists unless kept.
    let mut doomed = vec![rootfs.join("var/cache/apt/archives/partial")];
    doomed.extend(files_in(&rootfs.join("var/cache/apt"), |n| {
        n.ends_with(".bin")
    })?);
    doomed.extend(files_in(&rootfs.join("var/cache/apt/archives"), |n| {
        n.ends_with(".deb")
    })?);
    if !keep_apt_lists {
        doomed.extend(files_in(&rootfs.join("var/lib/apt/lists"), |n| {
            n != "lock" && n != "partial"
        })?);
    }
    for p in doomed {
        crate::fsutil::remove_tree(&p)?;
    }
    for rel in [
        "var/cache/apt/archives/partial",
        "var/lib/apt/lists/partial",
    ] {
        let p = rootfs.join(rel);
        std::fs::create_dir_all(&p).ctx("creating", &p)?;
    }
    Ok(())
}

fn files_in(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_str().is_some_and(&keep))
            .map(|e| e.path())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("reading", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path, sources: &str) -> BuildOptions {
        std::fs::create_dir_all(dir.join("apt/sources.list.d")).unwrap();
        std::fs::write(dir.join("apt/sources.list.d/debian.sources"), sources).unwrap();
        std::fs::write(dir.join("os-release"), "VERSION_CODENAME=bookworm\n").unwrap();
        BuildOptions {
            apt_dir: dir.join("apt"),
            os_release: dir.join("os-release"),
            ..Default::default()
        }
    }

    const HOST: &str = "Types: deb\nURIs: http://m.invalid/debian\nSuites: bookworm bookworm-updates\n\
        Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
        Types: deb\nURIs: http://m.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n";

    fn resolve(o: &BuildOptions) -> Result<Archive> {
        resolve_archive(o, None, &mut |_, _| panic!("no alias to look up"))
    }

    #[test]
    fn archive_from_host() {
        let dir = tempfile::tempdir().unwrap();
        let a = resolve(&opts(dir.path(), HOST)).unwrap();
        assert_eq!(
            (a.main.uri.as_str(), a.main.suite.as_str()),
            ("http://m.invalid/debian", "bookworm")
        );
        assert_eq!(a.all.len(), 3);
    }

    #[test]
    fn archive_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path(), HOST);
        o.mirror = Some("http://127.0.0.1:9/debian".into());
        let a = resolve(&o).unwrap();
        assert_eq!(a.all, vec![a.main.clone()]);
        assert_eq!(
            (a.main.uri.as_str(), a.main.suite.as_str()),
            ("http://127.0.0.1:9/debian", "bookworm")
        );
        assert_eq!(a.main.signed_by, None);
        o.suite = Some("trixie".into());
        assert_eq!(resolve(&o).unwrap().main.suite, "trixie");
        o.mirror = None;
        let a = resolve(&o).unwrap();
        let suites: Vec<_> = a
            .all
            .iter()
            .map(|e| (e.uri.as_str(), e.suite.as_str()))
            .collect();
        assert_eq!(
            suites,
            [
                ("http://m.invalid/debian", "trixie"),
                ("http://m.invalid/debian", "trixie-updates"),
                ("http://m.invalid/debian-security", "trixie-security"),
            ]
        );
    }

    #[test]
    fn recipe_suite_and_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path(), HOST);
        let mut asked = Vec::new();
        let mut lookup = |uri: &str, alias: &str| {
            asked.push(format!("{uri} {alias}"));
            Ok::<_, Error>("trixie".to_owned())
        };
        // The recipe's alias is looked up at the host's main archive.
        let a = resolve_archive(&o, Some("stable"), &mut lookup).unwrap();
        assert_eq!(a.main.suite, "trixie");
        assert_eq!(a.all.len(), 3);
        // The build's own suite wins over the recipe's, and a codename is not looked up.
        o.suite = Some("bookworm".into());
        let a = resolve_archive(&o, Some("stable"), &mut lookup).unwrap();
        assert_eq!((a.main.suite.as_str(), a.all.len()), ("bookworm", 3));
        assert_eq!(asked, ["http://m.invalid/debian stable"]);
        // A failed lookup is the build's error, not a silent fall back to the host's suite.
        o.suite = None;
        let err = resolve_archive(&o, Some("stable"), &mut |uri, alias| {
            Err(Error::SuiteAlias {
                alias: alias.into(),
                uri: uri.into(),
                reason: "404".into(),
            })
        })
        .unwrap_err();
        assert!(err.to_string().contains("--suite"), "{err}");
    }

    #[test]
    fn no_source_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve(&opts(dir.path(), "")).unwrap_err();
        assert!(matches!(err, Error::NoAptSource { .. }), "{err}");
        assert!(err.to_string().contains("mirror and suite"));
    }

    #[test]
    fn mmdebstrap_args() {
        let dir = tempfile::tempdir().unwrap();
        let a = resolve(&opts(dir.path(), HOST)).unwrap();
        let r = Recipe::builtin("minimal").unwrap();
        let args = Tool::Mmdebstrap("/x".into()).args(&r, &a, "amd64", Path::new("/t/rootfs"));
        assert!(args.contains(&"--variant=minbase".to_owned()));
        assert!(
            args.iter()
                .any(|a| a.starts_with("--include=bash,coreutils,"))
        );
        let i = args.iter().position(|a| a == "bookworm").unwrap();
        assert_eq!(args[i + 1], "/t/rootfs");
        assert_eq!(
            args[i + 2],
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://m.invalid/debian bookworm main"
        );
        assert_eq!(args.len(), i + 5);
        let d = Tool::Debootstrap("/x".into()).args(&r, &a, "amd64", Path::new("/t/rootfs"));
        assert_eq!(
            &d[d.len() - 3..],
            ["bookworm", "/t/rootfs", "http://m.invalid/debian"]
        );
    }

    /// Serves `InRelease` of `dists/stable` on loopback (and 404 for all else), for
    /// `connections` requests; returns the archive's URI.
    fn release_server(body: &'static str, connections: usize) -> String {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("http://{}/debian", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming().take(connections) {
                let mut stream = stream.unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head);
                let answer = if head.starts_with("GET /debian/dists/stable/InRelease ") {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_owned()
                };
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        uri
    }

    #[test]
    fn aliases_are_looked_up_with_apts_downloader() {
        if !Path::new("/usr/lib/apt/apt-helper").exists() {
            eprintln!("skipped: apt-helper is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let uri = release_server("Origin: Debian\nSuite: stable\nCodename: trixie\n", 1);
        assert_eq!(lookup_alias(&uri, "stable", dir.path()).unwrap(), "trixie");
        // Nothing at `dists/testing`: both files 404, and the error says what to do.
        let uri = release_server("", 2);
        let err = lookup_alias(&uri, "testing", dir.path()).unwrap_err();
        assert!(matches!(err, Error::SuiteAlias { .. }), "{err}");
        assert!(err.to_string().contains("--suite CODENAME"), "{err}");
        // A file that names no plain codename.
        let uri = release_server("Suite: stable\nCodename: ../../etc\n", 1);
        assert!(lookup_alias(&uri, "stable", dir.path()).is_err());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no file left"
        );
    }

    #[test]
    fn apt_progress_counts_and_paces() {
        use progress::AptLine;
        let mut a = AptProgress::default();
        let s = Duration::from_secs;
        assert_eq!(a.step(AptLine::Planned(10), s(0)), None);
        assert_eq!(
            a.step(AptLine::Get("bash"), s(1)),
            Some((Phase::Download, "downloading bash (1 of 10)".into()))
        );
        assert_eq!(a.step(AptLine::Get("curl"), s(2)), None, "too soon");
        assert_eq!(
            a.step(AptLine::SettingUp("curl"), s(5)),
            Some((Phase::Install, "setting up curl (1 of 10)".into()))
        );
        assert_eq!(
            a.step(AptLine::Get("git"), s(9)).unwrap().1,
            "downloading git (3 of 10)"
        );
    }

    #[test]
    fn a_ca_bundle_reaches_apt_and_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let a = resolve(&opts(dir.path(), HOST)).unwrap();
        let r = Recipe::builtin("minimal").unwrap();
        let tool = Tool::Mmdebstrap("/x".into());
        let plain = tool.args(&r, &a, "amd64", Path::new("/t/rootfs"));
        let mut o = opts(dir.path(), HOST);
        assert_eq!(with_trust(&tool, &o, plain.clone()), plain);
        o.ca_bundle = Some("/data/trust/build-ca.pem".into());
        let args = with_trust(&tool, &o, plain.clone());
        assert_eq!(
            args[0],
            "--aptopt=Acquire::https::CaInfo \"/data/trust/build-ca.pem\""
        );
        assert!(args[1].starts_with("--customize-hook=rm -f") && args[1].contains("99mmdebstrap"));
        assert_eq!(&args[2..], &plain[..]);
        let deboot = Tool::Debootstrap("/x".into());
        let d = deboot.args(&r, &a, "amd64", Path::new("/t/rootfs"));
        assert_eq!(with_trust(&deboot, &o, d.clone()), d);
    }

    #[test]
    fn finalize_a_fake_tree() {
        let dir = tempfile::tempdir().unwrap();
        let a = resolve(&opts(dir.path(), HOST)).unwrap();
        let root = dir.path().join("rootfs");
        for d in [
            "etc/apt",
            "var/cache/apt/archives/partial",
            "var/lib/apt/lists/partial",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("etc/apt/sources.list"), "deb x y z\n").unwrap();
        std::fs::write(root.join("var/cache/apt/pkgcache.bin"), "").unwrap();
        std::fs::write(root.join("var/cache/apt/archives/a.deb"), "").unwrap();
        std::fs::write(root.join("var/lib/apt/lists/m_Packages"), "").unwrap();
        std::fs::write(root.join("var/lib/apt/lists/lock"), "").unwrap();
        if !nix::unistd::geteuid().is_root() {
            return; // lchown to root needs root
        }
        finalize(&root, &a, false).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
            "firepit\n"
        );
        let mode = |p: &str| {
            std::fs::metadata(root.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(
            (mode("tmp"), mode("root"), mode("workspace")),
            (0o1777, 0o700, 0o755)
        );
        assert!(!root.join("etc/apt/sources.list").exists());
        let s =
            std::fs::read_to_string(root.join("etc/apt/sources.list.d/debian.sources")).unwrap();
        assert!(s.contains("Suites: bookworm-security"));
        assert!(!root.join("var/cache/apt/pkgcache.bin").exists());
        assert!(!root.join("var/cache/apt/archives/a.deb").exists());
        assert!(!root.join("var/lib/apt/lists/m_Packages").exists());
        assert!(root.join("var/lib/apt/lists/lock").exists());
        let conf = std::fs::read_to_string(root.join("etc/apt/apt.conf.d/99firepit")).unwrap();
        assert!(conf.contains("APT::Sandbox::User \"root\";"));
    }
}
