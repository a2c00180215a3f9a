//! File operations: streamed read and write, list, stat, mkdir, remove, rename.
//!
//! Every path is checked first ([`check_path`]: absolute, no `..`, no NUL). A write goes
//! to a temporary file in the target's directory and is renamed into place only when the
//! client finishes it, so a failed or abandoned write leaves no partial file.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use firepit_wire::guest::{
    DirEntry, ErrorKind, FileKind, FileStat, Request, Response, WireError, WriteOptions, check_path,
};
use tokio::io::AsyncWriteExt;

use crate::conn::{Inbound, Stream};

const CHUNK: usize = 256 * 1024;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WireError> + Send + 'static,
) -> Result<T, WireError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| Err(WireError::new(ErrorKind::Io, "file operation panicked")))
}

fn stat_of(md: &std::fs::Metadata) -> FileStat {
    let ft = md.file_type();
    let kind = if ft.is_symlink() {
        FileKind::Symlink
    } else if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    };
    FileStat {
        kind,
        size: md.len(),
        mode: md.mode() & 0o7777,
        mtime: md.mtime(),
    }
}

/// Streams a file: `FileSize`, then data frames, then `Done`.
pub async fn read(path: &str, s: &mut Stream) -> Result<Response, WireError> {
    check_path(path)?;
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| WireError::io(path, &e))?;
    let md = file.metadata().await.map_err(|e| WireError::io(path, &e))?;
    if md.is_dir() {
        return Err(WireError::new(
            ErrorKind::NotADirectory,
            format!("{path}: is a directory"),
        ));
    }
    if !s.send(&Response::FileSize { size: md.len() }).await {
        return Ok(Response::Done);
    }
    let mut buf = BytesMut::new();
    loop {
        if let Ok(_) | Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) = s.rx.try_recv() {
            return Ok(Response::Done); // cancelled
        }
        buf.reserve(CHUNK);
        let n = tokio::io::AsyncReadExt::read_buf(&mut file, &mut buf)
            .await
            .map_err(|e| WireError::io(path, &e))?;
        if n == 0 {
            return Ok(Response::Done);
        }
        if !s.data(buf.split().freeze()).await {
            return Ok(Response::Done);
        }
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Receives a file: `Ready`, data frames, `WriteFinish`; answers `Done` once it is in place.
pub async fn write(path: &str, opts: WriteOptions, s: &mut Stream) -> Result<Response, WireError> {
    check_path(path)?;
    let target = PathBuf::from(path);
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return Err(WireError::new(
            ErrorKind::InvalidInput,
            format!("not a file path: {path}"),
        ));
    };
    if opts.create_parents {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| WireError::io(dir.display(), &e))?;
    }
    let mode = match opts.mode {
        Some(m) => m & 0o7777,
        None => match tokio::fs::metadata(&target).await {
            Ok(md) => md.mode() & 0o7777,
            Err(_) => 0o644,
        },
    };
    let tmp_path = dir.join(format!(
        ".{}.firepit-{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp_path)
        .await
        .map_err(|e| WireError::io(path, &e))?;
    let mut tmp = TempFile(Some(tmp_path.clone()));
    if !s.send(&Response::Ready).await {
        return Ok(Response::Done);
    }
    loop {
        match s.rx.recv().await {
            Some(Inbound::Data(b)) => file
                .write_all(&b)
                .await
                .map_err(|e| WireError::io(path, &e))?,
            Some(Inbound::Control(Request::WriteFinish)) => break,
            // Cancelled or disconnected: the temporary file goes away.
            Some(Inbound::Control(_)) | None => return Ok(Response::Done),
        }
    }
    file.flush().await.map_err(|e| WireError::io(path, &e))?;
    drop(file);
    // The umask may have narrowed the mode given at creation.
    tokio::fs::set_permissions(&tmp_path, std::fs::Permissions::from_mode(mode))
        .await
        .map_err(|e| WireError::io(path, &e))?;
    tokio::fs::rename(&tmp_path, &target)
        .await
        .map_err(|e| WireError::io(path, &e))?;
    tmp.0 = None;
    Ok(Response::Done)
}

/// Lists a directory, sorted by name.
pub async fn list_dir(path: String) -> Result<Response, WireError> {
    check_path(&path)?;
    blocking(move || {
        let mut entries = Vec::new();
        for e in std::fs::read_dir(&path).map_err(|e| WireError::io(&path, &e))? {
            let e = e.map_err(|e| WireError::io(&path, &e))?;
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            }; // raced with a removal
            let st = stat_of(&md);
            entries.push(DirEntry {
                name: e.file_name().to_string_lossy().into_owned(),
                kind: st.kind,
                size: st.size,
                mode: st.mode,
                mtime: st.mtime,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Response::Dir { entries })
    })
    .await
}

/// Metadata of a path, not following a final symlink.
pub async fn stat(path: String) -> Result<Response, WireError> {
    check_path(&path)?;
    blocking(move || {
        let md = std::fs::symlink_metadata(&path).map_err(|e| WireError::io(&path, &e))?;
        Ok(Response::Stat(stat_of(&md)))
    })
    .await
}

/// Creates a directory.
pub async fn mkdir(path: String, parents: bool) -> Result<Response, WireError> {
    check_path(&path)?;
    blocking(move || {
        let r = if parents {
            std::fs::create_dir_all(&path)
        } else {
            std::fs::create_dir(&path)
        };
        r.map_err(|e| WireError::io(&path, &e))?;
        Ok(Response::Done)
    })
    .await
}

/// Removes a file or directory.
pub async fn remove(path: String, recursive: bool) -> Result<Response, WireError> {
    check_path(&path)?;
    if path == "/" {
        return Err(WireError::new(
            ErrorKind::PermissionDenied,
            "refusing to remove /",
        ));
    }
    blocking(move || {
        let md = std::fs::symlink_metadata(&path).map_err(|e| WireError::io(&path, &e))?;
        let r: io::Result<()> = if md.is_dir() {
            if recursive {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_dir(&path)
            }
        } else {
            std::fs::remove_file(&path)
        };
        r.map_err(|e| WireError::io(&path, &e))?;
        Ok(Response::Done)
    })
    .await
}

/// Renames a path.
pub async fn rename(from: String, to: String) -> Result<Response, WireError> {
    check_path(&from)?;
    check_path(&to)?;
    blocking(move || {
        std::fs::rename(Path::new(&from), Path::new(&to))
            .map_err(|e| WireError::io(format_args!("{from} -> {to}"), &e))?;
        Ok(Response::Done)
    })
    .await
}
