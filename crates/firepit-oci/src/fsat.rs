//! File operations relative to directory descriptors, for writing into a tree whose contents
//! are hostile (a layer's symlinks): paths below the root are resolved with `openat2` and
//! `RESOLVE_IN_ROOT` (a symlink met on the way is followed as if the root were `/`, so nothing
//! resolves outside it), and the last component of a path is never followed: it is made,
//! replaced or removed by name in a directory that was already opened.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Resolution flags for paths below an unpacked root.
pub const IN_ROOT: u64 =
    libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_XDEV;

pub fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: a fresh descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Opens a directory by path (the root itself, a trusted path).
pub fn open_dir(path: &std::path::Path) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
    // SAFETY: valid C string.
    owned(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    })
}

/// `openat2(dir, path, flags, resolve)`.
pub fn open_at2(
    dir: BorrowedFd<'_>,
    path: &str,
    flags: libc::c_int,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    // SAFETY: open_how is plain data; zero is valid for every field.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    // SAFETY: valid fd, C string and open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    owned(fd as libc::c_int)
}

/// `openat(dir, name, flags | O_NOFOLLOW, mode)`: a name in `dir`, its link never followed.
pub fn open_name(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: u32,
) -> io::Result<OwnedFd> {
    // SAFETY: valid fd and C string.
    owned(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`, `None` when there is nothing of that name.
pub fn stat_name(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<libc::stat>> {
    // SAFETY: stat is plain data; filled by the kernel on success.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, C string and out pointer.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    match check(rc) {
        Ok(()) => Ok(Some(st)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// `mkdirat`.
pub fn mkdir(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: valid fd and C string.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) })
}

/// `symlinkat(target, dir, name)`.
pub fn symlink(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: valid fd and C strings.
    check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })
}

/// `mknodat` of a FIFO.
pub fn mkfifo(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: valid fd and C string.
    check(unsafe {
        libc::mknodat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::S_IFIFO | (mode & 0o7777) as libc::mode_t,
            0,
        )
    })
}

/// `linkat(from_dir, from, to_dir, to, 0)`: a hard link to the entry itself (a symlink is not
/// followed).
pub fn hardlink(
    from_dir: BorrowedFd<'_>,
    from: &CStr,
    to_dir: BorrowedFd<'_>,
    to: &CStr,
) -> io::Result<()> {
    // SAFETY: valid fds and C strings.
    check(unsafe {
        libc::linkat(
            from_dir.as_raw_fd(),
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
            0,
        )
    })
}

/// `fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW)`.
pub fn chown_name(dir: BorrowedFd<'_>, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: valid fd and C string.
    check(unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// `fchown` then `fchmod` (in that order: a chown clears setuid and setgid).
pub fn chown_chmod(fd: BorrowedFd<'_>, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    // SAFETY: valid fd.
    check(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) })?;
    // SAFETY: valid fd.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), (mode & 0o7777) as libc::mode_t) })
}

/// Sets a file's modification (and access) time.
pub fn set_mtime(fd: BorrowedFd<'_>, secs: i64) -> io::Result<()> {
    let t = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: valid fd and two timespecs.
    check(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) })
}

/// Removes `name` from `dir` and, when it is a directory, everything under it; no link is
/// followed and nothing on another file system is entered.
pub fn remove_all(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    let Some(st) = stat_name(dir, name)? else {
        return Ok(());
    };
    if is_dir(&st) {
        let sub = open_name(dir, name, libc::O_DIRECTORY | libc::O_RDONLY, 0)?;
        for child in list(sub.as_fd())? {
            remove_all(sub.as_fd(), &child)?;
        }
        // SAFETY: valid fd and C string.
        check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) })
    } else {
        // SAFETY: valid fd and C string.
        check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) })
    }
}

/// The names in a directory (without `.` and `..`), read through the descriptor itself.
pub fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))? {
        let name = entry?.file_name();
        out.push(
            CString::new(name.as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "NUL in a name"))?,
        );
    }
    Ok(out)
}

/// The extended attribute that marks a directory of an overlayfs lower layer opaque.
const OPAQUE: &CStr = c"trusted.overlay.opaque";

/// Makes `name` in `dir` an overlayfs whiteout: a character device 0/0, which hides the
/// name in the layers below when the layer is an overlay's lower dir.
pub fn whiteout(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: valid fd and C string.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), libc::S_IFCHR, 0) })
}

/// Whether `st` is an overlayfs whiteout (a character device 0/0).
pub fn is_whiteout(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// Marks the directory `fd` opaque for overlayfs: the layers below add nothing to it.
pub fn set_opaque(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: valid fd, C string and a buffer of the length passed.
    check(unsafe { libc::fsetxattr(fd.as_raw_fd(), OPAQUE.as_ptr(), c"y".as_ptr().cast(), 1, 0) })
}

/// Whether the directory `fd` is marked opaque for overlayfs.
pub fn is_opaque(fd: BorrowedFd<'_>) -> bool {
    let mut v = [0u8; 1];
    // SAFETY: valid fd, C string and a buffer of the length passed.
    let n = unsafe { libc::fgetxattr(fd.as_raw_fd(), OPAQUE.as_ptr(), v.as_mut_ptr().cast(), 1) };
    n == 1 && v[0] == b'y'
}

/// `readlinkat(dir, name)`: a symlink's target.
pub fn read_link(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: valid fd, C string and a buffer of the length passed.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}
