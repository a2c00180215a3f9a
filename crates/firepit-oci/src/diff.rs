//! A machine's overlay upper directory as an OCI layer: what a build's `RUN` changed.
//!
//! Overlay whiteouts (character devices 0/0) become `.wh.NAME` entries, opaque directories
//! (`trusted.overlay.opaque` or `user.overlay.opaque` = `y`) get `.wh..wh..opq`, owners go from
//! the machine's uid range back to the ids inside (`id - machine_base`), hard links inside the
//! upper stay hard links. The files the machine's init writes at every start (`/etc/hostname`,
//! `/etc/hosts`, `/etc/resolv.conf`), the guest's mount point (`/.firepit`) and the kernel's
//! file systems (`/dev`, `/proc`, `/sys`) are left out. The upper is the machine's: no link in
//! it is followed (entries are read with `lstat`, links stored as links).

use std::collections::HashMap;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::error::{Error, IoContext, Result};

const SKIP: &[&str] = &[
    ".firepit",
    "dev",
    "proc",
    "sys",
    "etc/hostname",
    "etc/hosts",
    "etc/resolv.conf",
];

/// Writes the changes in `upper` as an uncompressed layer tar to `out`.
pub fn upper_to_tar(upper: &Path, machine_base: u32, out: &mut dyn Write) -> Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut links = HashMap::new();
    walk(upper, upper, machine_base, &mut b, &mut links)?;
    b.finish().ctx("writing the layer of", upper)?;
    Ok(())
}

fn opaque(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    for name in [c"trusted.overlay.opaque", c"user.overlay.opaque"] {
        let mut buf = [0u8; 4];
        // SAFETY: valid C strings and a buffer of the size passed.
        let n = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n == 1 && buf[0] == b'y' {
            return true;
        }
    }
    false
}

/// An empty entry's header, owned by root, time 0 (whiteouts, directories a build makes).
pub(crate) fn root_header(kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn header(m: &std::fs::Metadata, base: u32, rel: &str) -> Result<tar::Header> {
    let id = |v: u32| {
        v.checked_sub(base)
            .filter(|i| *i < firepit_image::UID_RANGE)
            .ok_or_else(|| Error::BadLayer {
                layer: "RUN".into(),
                reason: format!("/{rel} is owned by {v}, outside the machine's range"),
            })
    };
    let mut h = tar::Header::new_gnu();
    h.set_mode(m.mode() & 0o7777);
    h.set_uid(u64::from(id(m.uid())?));
    h.set_gid(u64::from(id(m.gid())?));
    h.set_mtime(m.mtime().max(0) as u64);
    h.set_size(0);
    Ok(h)
}

fn walk(
    root: &Path,
    dir: &Path,
    base: u32,
    b: &mut tar::Builder<&mut dyn Write>,
    links: &mut HashMap<u64, String>,
) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .ctx("reading", dir)?
        .collect::<std::io::Result<_>>()
        .ctx("reading", dir)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .map_err(|_| Error::io("reading", &path, std::io::ErrorKind::InvalidData.into()))?
            .to_string_lossy()
            .into_owned();
        if SKIP.contains(&rel.as_str()) {
            continue;
        }
        let m = std::fs::symlink_metadata(&path).ctx("inspecting", &path)?;
        let ft = m.file_type();
        if ft.is_char_device() && m.rdev() == 0 {
            let (parent, name) = match rel.rsplit_once('/') {
                Some((p, n)) => (format!("{p}/"), n.to_owned()),
                None => (String::new(), rel.clone()),
            };
            let mut h = root_header(tar::EntryType::Regular, 0o644);
            b.append_data(&mut h, format!("{parent}.wh.{name}"), &[][..])
                .ctx("writing a whiteout of", &path)?;
            continue;
        }
        let mut h = header(&m, base, &rel)?;
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, format!("{rel}/"), &[][..])
                .ctx("writing", &path)?;
            if opaque(&path) {
                let mut o = root_header(tar::EntryType::Regular, 0o644);
                b.append_data(&mut o, format!("{rel}/.wh..wh..opq"), &[][..])
                    .ctx("writing", &path)?;
            }
            walk(root, &path, base, b, links)?;
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            let target = std::fs::read_link(&path).ctx("reading", &path)?;
            b.append_link(&mut h, &rel, &target).ctx("writing", &path)?;
        } else if ft.is_file() {
            if m.nlink() > 1 {
                if let Some(first) = links.get(&m.ino()) {
                    h.set_entry_type(tar::EntryType::Link);
                    b.append_link(&mut h, &rel, first).ctx("writing", &path)?;
                    continue;
                }
                links.insert(m.ino(), rel.clone());
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(m.len());
            let f = std::fs::File::open(&path).ctx("reading", &path)?;
            b.append_data(&mut h, &rel, f).ctx("writing", &path)?;
        } else if ft.is_fifo() {
            h.set_entry_type(tar::EntryType::Fifo);
            b.append_data(&mut h, &rel, &[][..]).ctx("writing", &path)?;
        }
    }
    Ok(())
}
