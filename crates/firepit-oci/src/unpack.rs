//! Applying a layer (a tar, plain or gzip-compressed) to a root filesystem, as the OCI image
//! spec's "applying changesets" says: entries are added or replace what lower layers had,
//! `.wh.NAME` removes `NAME`, `.wh..wh..opq` empties its directory of what lower layers put
//! there.
//!
//! A layer is hostile input. Every entry's path is cleaned (a `..` component is refused; a
//! leading `/` or `./` means the root); its parent is resolved below the root with
//! `RESOLVE_IN_ROOT` (a symlink in the image, such as `/lib -> usr/lib`, is followed as the
//! machine would follow it, and nothing resolves outside the root); its last component is
//! made by name in the opened parent and never followed, so no entry writes through a link.
//! A hard link's target is resolved the same way and must be inside the root. Owners are
//! written shifted (`uid_base + id`), as the image store's invariant wants; an id beyond the
//! 65536 a machine maps is refused. Device nodes are skipped (a machine gets its `/dev` from
//! the launcher); extended attributes are not applied (file capabilities would be dropped by
//! the shift anyway). The uncompressed stream is hashed as it is read and must match the
//! image config's diff id.
//!
//! Two ways to apply: [`apply_layer`] merges a layer into a whole tree (whiteouts remove);
//! [`unpack_layer`] unpacks it into a directory of its own that an overlay stacks over the
//! layers below it: a whiteout becomes an overlayfs whiteout (a character device 0/0), an
//! opaque marker the `trusted.overlay.opaque` attribute, and parents are resolved in the
//! merged view of the stack (a lower layer's `/lib -> usr/lib` is followed as a machine would
//! follow it; a directory this layer must make takes its owner and mode from the one below).
//! Only the `.wh.` names make whiteouts: the layer's own device nodes and attributes are never
//! written, so no layer hides or reveals anything any other way.

use std::collections::HashSet;
use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::fsat::{self, IN_ROOT};

/// What applying a layer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries written (files, directories, links, FIFOs).
    pub entries: u64,
    /// Whiteouts and opaque markers applied.
    pub whiteouts: u64,
    /// Device nodes skipped.
    pub devices_skipped: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// How a layer's stream is compressed, told by its first bytes: gzip (read in process),
/// zstd (through the host's `zstd` program, run as nobody, which reads the blob on its stdin
/// and writes the tar to a pipe), or none.
fn decompress<'a>(layer: &str, blob: &Path) -> Result<Box<dyn Read + 'a>> {
    use std::io::BufRead as _;
    let file = std::fs::File::open(blob).map_err(|e| Error::io("opening layer", blob, e))?;
    let mut file = std::io::BufReader::with_capacity(1 << 20, file);
    let head = file
        .fill_buf()
        .map_err(|e| Error::io("reading layer", layer, e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(file)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(Zstd::start(layer, blob)?))
    } else {
        Ok(Box::new(file))
    }
}

/// The tar of a zstd-compressed blob, read from `zstd -d`: a stream that ends without the
/// program saying it succeeded is an error (a truncated or corrupt frame), and the program
/// is killed and reaped when the stream is dropped early.
struct Zstd {
    layer: String,
    child: std::process::Child,
    out: std::process::ChildStdout,
    done: bool,
}

/// The id the `zstd` program runs as.
const NOBODY: u32 = 65534;

impl Zstd {
    fn start(layer: &str, blob: &Path) -> Result<Zstd> {
        let input = std::fs::File::open(blob).map_err(|e| Error::io("opening layer", blob, e))?;
        use std::os::unix::process::CommandExt as _;
        // It reads hostile input: as nobody, with no groups, reading only its stdin.
        let mut child = std::process::Command::new("zstd")
            .args(["-d", "-c", "-q", "--no-progress"])
            .uid(NOBODY)
            .gid(NOBODY)
            .stdin(input)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| Error::BadLayer {
                layer: layer.to_owned(),
                reason: format!(
                    "it is zstd-compressed and the zstd program could not run ({e}); install zstd"
                ),
            })?;
        let out = child.stdout.take().expect("piped");
        Ok(Zstd {
            layer: layer.to_owned(),
            child,
            out,
            done: false,
        })
    }
}

impl Read for Zstd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.out.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.done {
            self.done = true;
            let status = self.child.wait()?;
            if !status.success() {
                return Err(io::Error::other(format!(
                    "zstd could not decompress layer {} ({status})",
                    self.layer
                )));
            }
        }
        Ok(n)
    }
}

impl Drop for Zstd {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Apply the layer blob at `blob` to `root`, owners shifted by `uid_base`; the uncompressed
/// content must hash to `diff_id` when one is given.
pub fn apply_layer(
    root: &Path,
    blob: &Path,
    layer: &Digest,
    diff_id: Option<&Digest>,
    uid_base: u32,
) -> Result<Stats> {
    apply(root, None, blob, layer, diff_id, uid_base)
}

/// Unpacks the layer blob at `blob` into `dir` (an empty directory) as an overlayfs lower
/// layer over `below` (the unpacked layers under it, topmost first); see the module docs.
pub fn unpack_layer(
    dir: &Path,
    below: &[std::path::PathBuf],
    blob: &Path,
    layer: &Digest,
    diff_id: Option<&Digest>,
    uid_base: u32,
) -> Result<Stats> {
    let fds = below
        .iter()
        .map(|p| fsat::open_dir(p).map_err(|e| Error::io("opening", p, e)))
        .collect::<Result<Vec<_>>>()?;
    apply(dir, Some(fds), blob, layer, diff_id, uid_base)
}

/// Whether the merged view of the stack `lowers` (topmost first) has a directory at `path`
/// (symlinks on the way followed inside the stack, as a machine would follow them).
pub fn is_dir_in(lowers: &[std::path::PathBuf], path: &str) -> Result<bool> {
    let Some((top, below)) = lowers.split_first() else {
        return Ok(false);
    };
    let open = |p: &std::path::PathBuf| fsat::open_dir(p).map_err(|e| Error::io("opening", p, e));
    let view = Applier {
        layer: "the image".into(),
        root: open(top)?,
        below: Some(below.iter().map(open).collect::<Result<Vec<_>>>()?),
        uid_base: 0,
        added: HashSet::new(),
        parent_cache: None,
        stats: Stats::default(),
    };
    let comps = clean(path.as_bytes()).map_err(|r| view.refuse(r))?;
    let canon = view.canonical(&comps)?;
    if canon.is_empty() {
        return Ok(true);
    }
    Ok(matches!(view.lookup(&canon)?, Some((_, st)) if fsat::is_dir(&st)))
}

/// Writes into `b` the entries of `COPY --from` of `sources` (paths in the merged view of the
/// stack `lowers`, topmost first, owners `uid_base + id`) to `dest` (relative to the root):
/// a directory's contents go into `dest`, a file to `dest` (or into it when `into_dir`).
/// Links on a source's path are followed inside the stack, links below it are copied as
/// links; owners, modes and times are kept; nothing is read through a host path.
pub fn copy_from_stack(
    lowers: &[std::path::PathBuf],
    uid_base: u32,
    sources: &[String],
    dest: &str,
    into_dir: bool,
    b: &mut tar::Builder<&mut std::fs::File>,
) -> Result<()> {
    let Some((top, below)) = lowers.split_first() else {
        return Err(Error::bad("COPY --from", "the stage has no files"));
    };
    let open = |p: &std::path::PathBuf| fsat::open_dir(p).map_err(|e| Error::io("opening", p, e));
    let view = Applier {
        layer: "the stage".into(),
        root: open(top)?,
        below: Some(below.iter().map(open).collect::<Result<Vec<_>>>()?),
        uid_base,
        added: HashSet::new(),
        parent_cache: None,
        stats: Stats::default(),
    };
    let dest = dest.trim_matches('/');
    for source in sources {
        let comps = clean(source.as_bytes()).map_err(|r| view.refuse(r))?;
        let canon = view.canonical(&comps)?;
        let is_dir =
            canon.is_empty() || matches!(view.lookup(&canon)?, Some((_, st)) if fsat::is_dir(&st));
        if is_dir {
            view.copy_dir(&canon, dest, b)?;
            continue;
        }
        let Some((i, st)) = view.lookup(&canon)? else {
            return Err(view.refuse(format!("COPY --from: {source} is not in it")));
        };
        let name = canon.last().cloned().unwrap_or_default();
        let target = if into_dir {
            join(dest, &name)
        } else {
            dest.to_owned()
        };
        let parent = view.open_in(i, &canon[..canon.len() - 1])?;
        view.copy_entry(parent.as_fd(), &name, &st, &target, b)?;
    }
    Ok(())
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

fn apply(
    root: &Path,
    below: Option<Vec<OwnedFd>>,
    blob: &Path,
    layer: &Digest,
    diff_id: Option<&Digest>,
    uid_base: u32,
) -> Result<Stats> {
    let name = layer.to_string();
    let reader = decompress(&name, blob)?;
    let mut hashing = HashingReader::new(reader);
    let root_fd = fsat::open_dir(root).map_err(|e| Error::io("opening", root, e))?;
    let mut applier = Applier {
        layer: name.clone(),
        root: root_fd,
        below,
        uid_base,
        added: HashSet::new(),
        parent_cache: None,
        stats: Stats::default(),
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let entries = archive.entries().map_err(|e| applier.tar_error(e))?;
        for entry in entries {
            let entry = entry.map_err(|e| applier.tar_error(e))?;
            applier.entry(entry)?;
        }
    }
    // The diff id covers the whole stream, the tar's end padding included.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| applier.tar_error(e))?;
    let (actual, _) = hashing.finish();
    if let Some(expected) = diff_id {
        expected.verify("layer content (diff id)", &actual)?;
    }
    Ok(applier.stats)
}

struct Applier {
    layer: String,
    root: OwnedFd,
    /// Unpacking into a layer of its own: the layers below it, topmost first.
    below: Option<Vec<OwnedFd>>,
    uid_base: u32,
    /// Paths this layer added: an opaque marker keeps them.
    added: HashSet<String>,
    /// The last parent directory opened, by its cleaned path.
    parent_cache: Option<(String, OwnedFd)>,
    stats: Stats,
}

/// A cleaned entry path: components without `.`, `..` or empty ones.
fn clean(raw: &[u8]) -> std::result::Result<Vec<String>, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "a path that is not UTF-8".to_owned())?;
    let mut out = Vec::new();
    for c in text.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(format!("path {text:?} leaves the root")),
            c => out.push(c.to_owned()),
        }
    }
    Ok(out)
}

impl Applier {
    fn tar_error(&self, e: io::Error) -> Error {
        Error::BadLayer {
            layer: self.layer.clone(),
            reason: format!("reading the tar: {e}"),
        }
    }

    fn refuse(&self, reason: impl Into<String>) -> Error {
        Error::BadLayer {
            layer: self.layer.clone(),
            reason: reason.into(),
        }
    }

    fn io(&self, what: &str, path: &str, e: io::Error) -> Error {
        self.refuse(format!("{what} /{path}: {e}"))
    }

    fn shift(&self, id: u64, path: &str) -> Result<u32> {
        if id >= u64::from(firepit_image::UID_RANGE) {
            return Err(self.refuse(format!(
                "/{path} is owned by id {id}, outside the {} ids a machine maps",
                firepit_image::UID_RANGE
            )));
        }
        Ok(self.uid_base + id as u32)
    }

    /// Opens the directory `comps` below the root, making missing ones (0755, root's) when
    /// `create`; `None` when it is missing and not to be made.
    fn dir(&mut self, comps: &[String], create: bool) -> Result<Option<OwnedFd>> {
        let path = comps.join("/");
        if let Some((cached, fd)) = &self.parent_cache
            && *cached == path
        {
            return Ok(Some(
                fd.try_clone().map_err(|e| self.io("opening", &path, e))?,
            ));
        }
        let flags = libc::O_DIRECTORY | libc::O_RDONLY;
        let full = if path.is_empty() { "." } else { path.as_str() };
        if self.below.is_some() {
            let fd = self.layer_dir(comps, create)?;
            if let Some(fd) = &fd {
                self.parent_cache = Some((
                    path.clone(),
                    fd.try_clone().map_err(|e| self.io("opening", &path, e))?,
                ));
            }
            return Ok(fd);
        }
        let fd = match fsat::open_at2(self.root.as_fd(), full, flags, IN_ROOT) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                if !create {
                    return Ok(None);
                }
                self.make_dirs(comps)?
            }
            Err(e) => return Err(self.io("opening directory", &path, e)),
        };
        self.parent_cache = Some((
            path.clone(),
            fd.try_clone().map_err(|e| self.io("opening", &path, e))?,
        ));
        Ok(Some(fd))
    }

    fn make_dirs(&mut self, comps: &[String]) -> Result<OwnedFd> {
        let flags = libc::O_DIRECTORY | libc::O_RDONLY;
        let mut cur = self
            .root
            .try_clone()
            .map_err(|e| self.io("opening", "", e))?;
        for i in 0..comps.len() {
            let prefix = comps[..=i].join("/");
            cur = match fsat::open_at2(self.root.as_fd(), &prefix, flags, IN_ROOT) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let name = fsat::cstr(&comps[i]).map_err(|e| self.io("making", &prefix, e))?;
                    fsat::mkdir(cur.as_fd(), &name, 0o755)
                        .map_err(|e| self.io("making directory", &prefix, e))?;
                    let fd = fsat::open_name(cur.as_fd(), &name, flags, 0)
                        .map_err(|e| self.io("opening", &prefix, e))?;
                    fsat::chown_chmod(fd.as_fd(), self.uid_base, self.uid_base, 0o755)
                        .map_err(|e| self.io("changing the owner of", &prefix, e))?;
                    fd
                }
                Err(e) => return Err(self.io("opening directory", &prefix, e)),
            };
        }
        Ok(cur)
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let comps = clean(&raw).map_err(|r| self.refuse(r))?;
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().map_err(|e| self.tar_error(e))?;
        let mut uid = header.uid().map_err(|e| self.tar_error(e))?;
        let mut gid = header.gid().map_err(|e| self.tar_error(e))?;
        let mtime = header.mtime().unwrap_or(0);
        if let Ok(Some(pax)) = entry.pax_extensions() {
            for ext in pax.flatten() {
                let value = || ext.value().ok().and_then(|v| v.parse::<u64>().ok());
                match ext.key() {
                    Ok("uid") => uid = value().unwrap_or(uid),
                    Ok("gid") => gid = value().unwrap_or(gid),
                    _ => {}
                }
            }
        }
        let path = comps.join("/");
        let Some((name, parent)) = comps.split_last() else {
            // The root itself: only its metadata.
            if kind.is_dir() {
                let (u, g) = (self.shift(uid, "")?, self.shift(gid, "")?);
                fsat::chown_chmod(self.root.as_fd(), u, g, mode)
                    .map_err(|e| self.io("setting the mode of", "", e))?;
            }
            return Ok(());
        };

        if self.below.is_some()
            && let Some(target) = name.strip_prefix(".wh.")
        {
            return self.layer_whiteout(parent, target, &path);
        }

        // Whiteouts.
        if let Some(target) = name.strip_prefix(".wh.") {
            self.stats.whiteouts += 1;
            let Some(dir) = self.dir(parent, false)? else {
                return Ok(());
            };
            if target == ".wh..opq" {
                let prefix = parent.join("/");
                return self.opaque(dir, &prefix);
            }
            if target.is_empty() || target == "." || target == ".." {
                return Err(self.refuse(format!("whiteout {path:?} names nothing")));
            }
            let c = fsat::cstr(target).map_err(|e| self.io("removing", &path, e))?;
            self.parent_cache = None;
            return fsat::remove_all(dir.as_fd(), &c).map_err(|e| self.io("removing", &path, e));
        }

        let dir = self.dir(parent, true)?.expect("made when missing");
        let cname = fsat::cstr(name).map_err(|e| self.io("making", &path, e))?;
        let existing =
            fsat::stat_name(dir.as_fd(), &cname).map_err(|e| self.io("inspecting", &path, e))?;
        let (u, g) = (self.shift(uid, &path)?, self.shift(gid, &path)?);
        self.added.insert(path.clone());
        match kind {
            tar::EntryType::Directory => {
                let hides_below = existing.is_some_and(|st| fsat::is_whiteout(&st));
                match existing {
                    Some(st) if fsat::is_dir(&st) => {}
                    Some(_) => {
                        fsat::remove_all(dir.as_fd(), &cname)
                            .map_err(|e| self.io("replacing", &path, e))?;
                        fsat::mkdir(dir.as_fd(), &cname, 0o700)
                            .map_err(|e| self.io("making directory", &path, e))?;
                    }
                    None => fsat::mkdir(dir.as_fd(), &cname, 0o700)
                        .map_err(|e| self.io("making directory", &path, e))?,
                }
                let fd =
                    fsat::open_name(dir.as_fd(), &cname, libc::O_DIRECTORY | libc::O_RDONLY, 0)
                        .map_err(|e| self.io("opening", &path, e))?;
                fsat::chown_chmod(fd.as_fd(), u, g, mode)
                    .map_err(|e| self.io("setting the owner of", &path, e))?;
                if hides_below && self.below.is_some() {
                    fsat::set_opaque(fd.as_fd())
                        .map_err(|e| self.io("marking opaque", &path, e))?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                if existing.is_some() {
                    self.replace(&dir, &cname, &path)?;
                }
                let fd = fsat::open_name(
                    dir.as_fd(),
                    &cname,
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                    0o600,
                )
                .map_err(|e| self.io("creating", &path, e))?;
                let mut file = std::fs::File::from(fd);
                let n =
                    io::copy(&mut entry, &mut file).map_err(|e| self.io("writing", &path, e))?;
                self.stats.bytes += n;
                fsat::chown_chmod(file.as_fd(), u, g, mode)
                    .map_err(|e| self.io("setting the owner of", &path, e))?;
                fsat::set_mtime(file.as_fd(), mtime as i64)
                    .map_err(|e| self.io("setting the time of", &path, e))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refuse(format!("symlink /{path} has no target")))?;
                let target = CString::new(target.into_owned())
                    .map_err(|_| self.refuse(format!("symlink /{path} has a NUL in its target")))?;
                if existing.is_some() {
                    self.replace(&dir, &cname, &path)?;
                }
                fsat::symlink(&target, dir.as_fd(), &cname)
                    .map_err(|e| self.io("making symlink", &path, e))?;
                fsat::chown_name(dir.as_fd(), &cname, u, g)
                    .map_err(|e| self.io("setting the owner of", &path, e))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refuse(format!("hard link /{path} has no target")))?;
                let tcomps = clean(&target).map_err(|r| self.refuse(r))?;
                let Some((tname, tparent)) = tcomps.split_last() else {
                    return Err(self.refuse(format!("hard link /{path} points at the root")));
                };
                let tdir = if self.below.is_some() {
                    self.link_source(tparent, tname)?
                } else {
                    self.dir(tparent, false)?
                };
                let tdir = tdir.ok_or_else(|| {
                    self.refuse(format!(
                        "hard link /{path}: its target's directory is missing"
                    ))
                })?;
                let tc = fsat::cstr(tname).map_err(|e| self.io("linking", &path, e))?;
                match fsat::stat_name(tdir.as_fd(), &tc) {
                    Ok(Some(st)) if !fsat::is_dir(&st) => {}
                    _ => {
                        return Err(self.refuse(format!(
                            "hard link /{path} points at /{}, which is not a file of the image",
                            tcomps.join("/")
                        )));
                    }
                }
                if tcomps == comps {
                    return Ok(());
                }
                if existing.is_some() {
                    self.replace(&dir, &cname, &path)?;
                }
                fsat::hardlink(tdir.as_fd(), &tc, dir.as_fd(), &cname)
                    .map_err(|e| self.io("linking", &path, e))?;
            }
            tar::EntryType::Fifo => {
                if existing.is_some() {
                    self.replace(&dir, &cname, &path)?;
                }
                fsat::mkfifo(dir.as_fd(), &cname, 0o600)
                    .map_err(|e| self.io("making FIFO", &path, e))?;
                fsat::chown_name(dir.as_fd(), &cname, u, g)
                    .map_err(|e| self.io("setting the owner of", &path, e))?;
                // SAFETY: valid fd and C string; fchmodat never follows here: a FIFO we made.
                let rc = unsafe {
                    libc::fchmodat(
                        std::os::fd::AsRawFd::as_raw_fd(&dir),
                        cname.as_ptr(),
                        (mode & 0o7777) as libc::mode_t,
                        0,
                    )
                };
                if rc != 0 {
                    return Err(self.io("setting the mode of", &path, io::Error::last_os_error()));
                }
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                self.added.remove(&path);
                self.stats.devices_skipped += 1;
                return Ok(());
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => return Ok(()),
            other => {
                return Err(self.refuse(format!(
                    "/{path} has an entry type firepit does not unpack ({other:?})"
                )));
            }
        }
        self.stats.entries += 1;
        Ok(())
    }

    /// The layers of the stack, this one first, then those below.
    fn stack(&self) -> Vec<BorrowedFd<'_>> {
        let mut v = vec![self.root.as_fd()];
        v.extend(self.below.iter().flatten().map(|fd| fd.as_fd()));
        v
    }

    /// What the merged view of the stack has at `comps` (no link followed): the topmost
    /// layer that has it and its stat; `None` when it is missing, whited out, under an opaque
    /// directory above the layer that has it, or below a non-directory.
    fn lookup(&self, comps: &[String]) -> Result<Option<(usize, libc::stat)>> {
        self.lookup_from(comps, 0)
    }

    /// [`Self::lookup`] in the layers of the stack from the `from`-th on.
    fn lookup_from(&self, comps: &[String], from: usize) -> Result<Option<(usize, libc::stat)>> {
        let path = comps.join("/");
        if comps.is_empty() {
            return Ok(None);
        }
        'layers: for (i, root) in self.stack().into_iter().enumerate().skip(from) {
            let mut cur: Option<OwnedFd> = None;
            let mut opaque = false;
            for (j, c) in comps.iter().enumerate() {
                let dir = cur.as_ref().map_or(root, |fd| fd.as_fd());
                let cn = fsat::cstr(c).map_err(|e| self.io("looking up", &path, e))?;
                match fsat::stat_name(dir, &cn).map_err(|e| self.io("looking up", &path, e))? {
                    None if opaque => return Ok(None),
                    None => continue 'layers,
                    Some(st) if fsat::is_whiteout(&st) => return Ok(None),
                    Some(st) if j + 1 == comps.len() => return Ok(Some((i, st))),
                    Some(st) if fsat::is_dir(&st) => {
                        let fd = fsat::open_name(dir, &cn, libc::O_DIRECTORY | libc::O_RDONLY, 0)
                            .map_err(|e| self.io("looking up", &path, e))?;
                        opaque |= fsat::is_opaque(fd.as_fd());
                        cur = Some(fd);
                    }
                    Some(_) => return Ok(None),
                }
            }
        }
        Ok(None)
    }

    /// `comps` with the symlinks of the merged view resolved as a machine would resolve them
    /// (inside the root: `..` at the root stays there); at most 40 links.
    fn canonical(&self, comps: &[String]) -> Result<Vec<String>> {
        Ok(self.resolve(comps)?.into_iter().map(|(c, _)| c).collect())
    }

    /// [`Self::canonical`], each component marked when it came from a link's target.
    fn resolve(&self, comps: &[String]) -> Result<Vec<(String, bool)>> {
        let mut out: Vec<(String, bool)> = Vec::new();
        let mut todo: std::collections::VecDeque<(String, bool)> =
            comps.iter().map(|c| (c.clone(), false)).collect();
        let mut hops = 0;
        while let Some((c, linked)) = todo.pop_front() {
            if c == ".." {
                out.pop();
                continue;
            }
            out.push((c, linked));
            let names: Vec<String> = out.iter().map(|(c, _)| c.clone()).collect();
            let Some((i, st)) = self.lookup(&names)? else {
                continue;
            };
            if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
                continue;
            }
            hops += 1;
            let path = names.join("/");
            if hops > 40 {
                return Err(self.refuse(format!("/{path}: too many symlinks")));
            }
            out.pop();
            let parent = self.open_in(i, &names[..names.len() - 1])?;
            let cn = fsat::cstr(&names[names.len() - 1])
                .map_err(|e| self.io("reading link", &path, e))?;
            let target = fsat::read_link(parent.as_fd(), &cn)
                .map_err(|e| self.io("reading link", &path, e))?;
            let target = String::from_utf8(target)
                .map_err(|_| self.refuse(format!("/{path} links to a path that is not UTF-8")))?;
            if target.starts_with('/') {
                out.clear();
            }
            for part in target.split('/').rev() {
                if !part.is_empty() && part != "." {
                    todo.push_front((part.to_owned(), true));
                }
            }
        }
        Ok(out)
    }

    /// The directory `comps` of layer `i` of the stack (no link followed).
    fn open_in(&self, i: usize, comps: &[String]) -> Result<OwnedFd> {
        let path = comps.join("/");
        let full = if path.is_empty() { "." } else { path.as_str() };
        let stack = self.stack();
        fsat::open_at2(
            stack[i],
            full,
            libc::O_DIRECTORY | libc::O_RDONLY,
            IN_ROOT | libc::RESOLVE_NO_SYMLINKS,
        )
        .map_err(|e| self.io("opening directory", &path, e))
    }

    /// Layer mode: the directory `comps` of this layer (its path resolved in the merged view),
    /// made when missing with the owner and mode the merged view has there; `None` when the
    /// merged view has no directory there and `create` is false.
    fn layer_dir(&mut self, comps: &[String], create: bool) -> Result<Option<OwnedFd>> {
        let flags = libc::O_DIRECTORY | libc::O_RDONLY;
        let path = comps.join("/");
        let full = if path.is_empty() { "." } else { path.as_str() };
        // A directory of this layer: the merged view's, whatever is below.
        match fsat::open_at2(
            self.root.as_fd(),
            full,
            flags,
            IN_ROOT | libc::RESOLVE_NO_SYMLINKS,
        ) {
            Ok(fd) => return Ok(Some(fd)),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                ) => {}
            Err(e) => return Err(self.io("opening directory", &path, e)),
        }
        let marked = self.resolve(comps)?;
        let canon: Vec<String> = marked.iter().map(|(c, _)| c.clone()).collect();
        if !create && !canon.is_empty() {
            match self.lookup(&canon)? {
                Some((_, st)) if fsat::is_dir(&st) => {}
                _ => return Ok(None),
            }
        }
        let mut cur = self
            .root
            .try_clone()
            .map_err(|e| self.io("opening", "", e))?;
        for i in 0..canon.len() {
            let prefix = canon[..=i].join("/");
            let name = fsat::cstr(&canon[i]).map_err(|e| self.io("making", &prefix, e))?;
            let existing = fsat::stat_name(cur.as_fd(), &name)
                .map_err(|e| self.io("inspecting", &prefix, e))?;
            // The owner and mode the layers below give the directory.
            let below = match self.lookup_from(&canon[..=i], 1)? {
                Some((_, st)) if fsat::is_dir(&st) => Some(st),
                _ => None,
            };
            let mut hides_below = false;
            match existing {
                Some(st) if fsat::is_dir(&st) => {}
                Some(st) if fsat::is_whiteout(&st) => {
                    fsat::remove_all(cur.as_fd(), &name)
                        .map_err(|e| self.io("replacing", &prefix, e))?;
                    fsat::mkdir(cur.as_fd(), &name, 0o700)
                        .map_err(|e| self.io("making directory", &prefix, e))?;
                    hides_below = true;
                }
                Some(_) => {
                    return Err(self.refuse(format!(
                        "/{prefix} is not a directory, and the layer puts files under it"
                    )));
                }
                // A link's target is followed, never made: as a machine's write through a
                // link to a missing directory would fail.
                None if marked[i].1 && below.is_none() => {
                    return Err(self.refuse(format!(
                        "/{path} goes through a symlink to /{prefix}, which is missing"
                    )));
                }
                None => fsat::mkdir(cur.as_fd(), &name, 0o700)
                    .map_err(|e| self.io("making directory", &prefix, e))?,
            }
            let fd = fsat::open_name(cur.as_fd(), &name, flags, 0)
                .map_err(|e| self.io("opening", &prefix, e))?;
            if existing.is_none() || hides_below {
                let (u, g, mode) = match below {
                    Some(st) if !hides_below => (st.st_uid, st.st_gid, st.st_mode & 0o7777),
                    _ => (self.uid_base, self.uid_base, 0o755),
                };
                fsat::chown_chmod(fd.as_fd(), u, g, mode)
                    .map_err(|e| self.io("changing the owner of", &prefix, e))?;
                if hides_below {
                    fsat::set_opaque(fd.as_fd())
                        .map_err(|e| self.io("marking opaque", &prefix, e))?;
                }
            }
            cur = fd;
        }
        Ok(Some(cur))
    }

    /// Layer mode: a whiteout `.wh.<target>` in the directory `parent`.
    fn layer_whiteout(&mut self, parent: &[String], target: &str, path: &str) -> Result<()> {
        self.stats.whiteouts += 1;
        // Nothing below to hide when the merged view has no such directory.
        let Some(dir) = self.dir(parent, false)? else {
            return Ok(());
        };
        if target == ".wh..opq" {
            return fsat::set_opaque(dir.as_fd()).map_err(|e| self.io("marking opaque", path, e));
        }
        if target.starts_with(".wh.") {
            // Other `.wh..wh.` names are a writer's bookkeeping, not whiteouts.
            return Ok(());
        }
        if target.is_empty() || target == "." || target == ".." {
            return Err(self.refuse(format!("whiteout {path:?} names nothing")));
        }
        let c = fsat::cstr(target).map_err(|e| self.io("removing", path, e))?;
        match fsat::stat_name(dir.as_fd(), &c).map_err(|e| self.io("inspecting", path, e))? {
            // This layer's own directory of that name: what is below must not show through.
            Some(st) if fsat::is_dir(&st) => {
                let fd = fsat::open_name(dir.as_fd(), &c, libc::O_DIRECTORY | libc::O_RDONLY, 0)
                    .map_err(|e| self.io("opening", path, e))?;
                fsat::set_opaque(fd.as_fd()).map_err(|e| self.io("marking opaque", path, e))
            }
            // This layer's own file hides what is below already.
            Some(_) => Ok(()),
            None => fsat::whiteout(dir.as_fd(), &c).map_err(|e| self.io("whiting out", path, e)),
        }
    }

    /// Layer mode: the directory holding a hard link's target `parent/name`: this layer's,
    /// or the topmost layer below that has it (layers are never changed once made, so a link
    /// across them is safe).
    fn link_source(&mut self, parent: &[String], name: &str) -> Result<Option<OwnedFd>> {
        let canon = self.canonical(parent)?;
        let mut full = canon.clone();
        full.push(name.to_owned());
        match self.lookup(&full)? {
            Some((i, st)) if !fsat::is_dir(&st) => Ok(Some(self.open_in(i, &canon)?)),
            _ => Ok(None),
        }
    }

    /// The directories at `comps` that the merged view shows, topmost first: each layer's
    /// own, down to an opaque one or to a layer where something hides the path.
    fn visible_dirs(&self, comps: &[String]) -> Result<Vec<OwnedFd>> {
        let path = comps.join("/");
        let mut out = Vec::new();
        for root in self.stack() {
            let mut cur: Option<OwnedFd> = None;
            let mut opaque = false;
            let mut missing = false;
            for c in comps {
                let dir = cur.as_ref().map_or(root, |fd| fd.as_fd());
                let cn = fsat::cstr(c).map_err(|e| self.io("looking up", &path, e))?;
                match fsat::stat_name(dir, &cn).map_err(|e| self.io("looking up", &path, e))? {
                    None => {
                        missing = true;
                        break;
                    }
                    Some(st) if fsat::is_dir(&st) => {
                        let fd = fsat::open_name(dir, &cn, libc::O_DIRECTORY | libc::O_RDONLY, 0)
                            .map_err(|e| self.io("looking up", &path, e))?;
                        opaque |= fsat::is_opaque(fd.as_fd());
                        cur = Some(fd);
                    }
                    // A whiteout or a non-directory hides the path below.
                    Some(_) => return Ok(out),
                }
            }
            if !missing {
                let fd = match cur {
                    Some(fd) => fd,
                    None => root
                        .try_clone_to_owned()
                        .map_err(|e| self.io("opening", "", e))?,
                };
                out.push(fd);
            }
            if opaque {
                break;
            }
        }
        Ok(out)
    }

    /// `COPY --from` of the merged directory `comps`: its entries, recursively, under `target`.
    fn copy_dir(
        &self,
        comps: &[String],
        target: &str,
        b: &mut tar::Builder<&mut std::fs::File>,
    ) -> Result<()> {
        let mut seen = HashSet::new();
        let mut entries = Vec::new();
        for dir in self.visible_dirs(comps)? {
            let path = comps.join("/");
            for name in fsat::list(dir.as_fd()).map_err(|e| self.io("listing", &path, e))? {
                if !seen.insert(name.clone()) {
                    continue;
                }
                let Some(st) = fsat::stat_name(dir.as_fd(), &name)
                    .map_err(|e| self.io("inspecting", &path, e))?
                else {
                    continue;
                };
                if fsat::is_whiteout(&st) {
                    continue;
                }
                let text = name
                    .to_str()
                    .map_err(|_| self.refuse(format!("/{path} has a name that is not UTF-8")))?
                    .to_owned();
                entries.push((
                    text,
                    st,
                    dir.try_clone().map_err(|e| self.io("opening", &path, e))?,
                ));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, st, dir) in entries {
            let child_target = join(target, &name);
            self.copy_entry(dir.as_fd(), &name, &st, &child_target, b)?;
            if fsat::is_dir(&st) {
                let mut sub = comps.to_vec();
                sub.push(name);
                self.copy_dir(&sub, &child_target, b)?;
            }
        }
        Ok(())
    }

    /// One entry of `COPY --from`, read by name in `dir` (never followed), as `target`.
    fn copy_entry(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        st: &libc::stat,
        target: &str,
        b: &mut tar::Builder<&mut std::fs::File>,
    ) -> Result<()> {
        let unshift = |id: u32| u64::from(id.saturating_sub(self.uid_base));
        let mut h = tar::Header::new_gnu();
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(unshift(st.st_uid));
        h.set_gid(unshift(st.st_gid));
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        let cn = fsat::cstr(name).map_err(|e| self.io("reading", target, e))?;
        let err = |e: io::Error| self.io("copying", target, e);
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                h.set_entry_type(tar::EntryType::Directory);
                b.append_data(&mut h, format!("{target}/"), &[][..])
                    .map_err(err)
            }
            libc::S_IFLNK => {
                h.set_entry_type(tar::EntryType::Symlink);
                let link = fsat::read_link(dir, &cn).map_err(err)?;
                let link = String::from_utf8(link)
                    .map_err(|_| self.refuse(format!("/{target}: a link that is not UTF-8")))?;
                b.append_link(&mut h, target, link).map_err(err)
            }
            libc::S_IFREG => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(st.st_size as u64);
                let fd = fsat::open_name(dir, &cn, libc::O_RDONLY, 0).map_err(err)?;
                let f = std::fs::File::from(fd);
                // At most the size it had: a file is read as it was listed.
                b.append_data(&mut h, target, f.take(st.st_size as u64))
                    .map_err(err)
            }
            libc::S_IFIFO => {
                h.set_entry_type(tar::EntryType::Fifo);
                b.append_data(&mut h, target, &[][..]).map_err(err)
            }
            // Devices and sockets are not copied.
            _ => Ok(()),
        }
    }

    /// Removes what is at `name` so that an entry can take its place.
    fn replace(&mut self, dir: &OwnedFd, name: &CString, path: &str) -> Result<()> {
        self.parent_cache = None;
        fsat::remove_all(dir.as_fd(), name).map_err(|e| self.io("replacing", path, e))
    }

    /// Empties `dir` (at `prefix`) of everything this layer did not add.
    fn opaque(&mut self, dir: OwnedFd, prefix: &str) -> Result<()> {
        self.parent_cache = None;
        let names = fsat::list(dir.as_fd()).map_err(|e| self.io("listing", prefix, e))?;
        for name in names {
            let Ok(text) = name.to_str() else {
                fsat::remove_all(dir.as_fd(), &name)
                    .map_err(|e| self.io("removing in", prefix, e))?;
                continue;
            };
            let path = if prefix.is_empty() {
                text.to_owned()
            } else {
                format!("{prefix}/{text}")
            };
            if !self.added.contains(&path) {
                fsat::remove_all(dir.as_fd(), &name).map_err(|e| self.io("removing", &path, e))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_paths() {
        assert_eq!(clean(b"./a//b/./c").unwrap(), ["a", "b", "c"]);
        assert_eq!(clean(b"/etc/passwd").unwrap(), ["etc", "passwd"]);
        assert!(clean(b"./").unwrap().is_empty());
        assert!(clean(b"a/../../etc").is_err());
        assert!(clean(b"..").is_err());
        assert!(clean(&[0xff, b'a']).is_err());
    }
}
