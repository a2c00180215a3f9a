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

use std::collections::HashSet;
use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
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

/// How a layer's stream is compressed, told by its first bytes.
fn decompress<'a>(
    layer: &str,
    mut file: std::io::BufReader<std::fs::File>,
) -> Result<Box<dyn Read + 'a>> {
    use std::io::BufRead as _;
    let head = file
        .fill_buf()
        .map_err(|e| Error::io("reading layer", layer, e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(file)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(Error::BadLayer {
            layer: layer.to_owned(),
            reason: "zstd-compressed layers are not supported yet; push the image with gzip layers"
                .into(),
        })
    } else {
        Ok(Box::new(file))
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
    let name = layer.to_string();
    let file = std::fs::File::open(blob).map_err(|e| Error::io("opening layer", blob, e))?;
    let reader = decompress(&name, std::io::BufReader::with_capacity(1 << 20, file))?;
    let mut hashing = HashingReader::new(reader);
    let root_fd = fsat::open_dir(root).map_err(|e| Error::io("opening", root, e))?;
    let mut applier = Applier {
        layer: name.clone(),
        root: root_fd,
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
                let tdir = self.dir(tparent, false)?.ok_or_else(|| {
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
