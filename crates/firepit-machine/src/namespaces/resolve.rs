//! Paths below a machine's root, resolved so that nothing the machine made can
//! send them elsewhere.
//!
//! A machine's root inside is writable by it: any entry of its upper layer may
//! be a symlink (absolute or full of `..`), a file where a directory is
//! expected, or the reverse. Code that runs with the host's view of the file
//! system (the launcher, as host root, before the machine's init has entered its root
//! into its root) therefore never follows a path through such entries:
//!
//! - a path below a root is opened with `openat2` relative to the root's fd,
//!   with `RESOLVE_IN_ROOT` (symlinks and `..` stay inside) or
//!   `RESOLVE_NO_SYMLINKS`, and always `RESOLVE_NO_MAGICLINKS`;
//! - a mount point is made by [`ensure`] (what stands in its place and is not
//!   of its kind is removed) and mounted on through its fd
//!   (`/proc/self/fd/N`, [`fd_path`]), never through a path walked again;
//! - files are replaced by writing a new one next to them and renaming it over
//!   ([`replace_file`]), so a symlink in their place is replaced, not followed;
//! - trees are removed by [`remove_tree`], which opens every directory with
//!   `O_NOFOLLOW` relative to its parent, never crosses into another file
//!   system, and holds one directory fd at a time however deep the tree is.
//!
//! None of this runs while the machine's processes do (it runs at launch,
//! before the machine's init execs, or when the machine is stopped), so the
//! tree it looks at does not change under it.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Symlinks and `..` are followed, but never out of the root; magic links
/// (`/proc/*/fd/*`, `/proc/*/root`) are refused.
pub(crate) const IN_ROOT: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
/// No symlink at all, nor `..` out of the starting directory.
pub(crate) const NO_LINKS: u64 =
    libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;

/// What a mount point must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cstr(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in a path"))
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    check(fd).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a directory the host trusts (no part of its path is a machine's)
/// as an `O_PATH` fd to resolve below.
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str().as_bytes())?;
    // SAFETY: a valid C string; the result is checked.
    owned(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })
}

/// `openat2(dir, path, flags, resolve)`.
pub(crate) fn open_at(
    dir: BorrowedFd<'_>,
    path: &str,
    flags: libc::c_int,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let c = cstr(path.as_bytes())?;
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

/// The path by which the kernel reaches exactly what `fd` refers to; for
/// `mount(2)` targets and sources, which take paths only.
pub(crate) fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: stat is plain data; filled by the kernel on success.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, C string and out pointer.
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

fn fd_stat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: as in stat_at.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and out pointer.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn unlink_at(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: valid fd and C string.
    match check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r.map(drop),
    }
}

fn one_component(name: &str) -> io::Result<CString> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not one path component"),
        ));
    }
    cstr(name.as_bytes())
}

/// Makes `name` in `dir` a directory or an empty regular file of its own
/// (whatever else stands there, a symlink above all, is removed first) and
/// returns an `O_PATH` fd of it. A new one gets `mode` and, if given, `owner`
/// as its uid and gid; one of the right kind is kept as it is.
pub(crate) fn ensure(
    dir: BorrowedFd<'_>,
    name: &str,
    kind: Kind,
    mode: u32,
    owner: Option<u32>,
) -> io::Result<OwnedFd> {
    let c = one_component(name)?;
    let present = match stat_at(dir, &c) {
        Ok(st) if of_kind(&st, kind) => true,
        Ok(st) if is_dir(&st) => {
            remove_tree_at(dir, &c)?;
            false
        }
        Ok(_) => {
            unlink_at(dir, &c, 0)?;
            false
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    if !present {
        match kind {
            // SAFETY: valid fd and C string.
            Kind::Dir => drop(check(unsafe {
                libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode)
            })?),
            // SAFETY: valid fd and C string; the new fd is closed at once.
            Kind::File => drop(owned(unsafe {
                libc::openat(
                    dir.as_raw_fd(),
                    c.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    mode,
                )
            })?),
        }
        if let Some(id) = owner {
            // SAFETY: valid fd and C string; the entry was just made by us.
            check(unsafe {
                libc::fchownat(
                    dir.as_raw_fd(),
                    c.as_ptr(),
                    id,
                    id,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            })?;
        }
        // The umask took bits off. SAFETY: as above.
        check(unsafe { libc::fchmodat(dir.as_raw_fd(), c.as_ptr(), mode, 0) })?;
    }
    let dir_flag = if kind == Kind::Dir {
        libc::O_DIRECTORY
    } else {
        0
    };
    open_at(
        dir,
        name,
        libc::O_PATH | libc::O_NOFOLLOW | dir_flag,
        NO_LINKS,
    )
}

fn of_kind(st: &libc::stat, kind: Kind) -> bool {
    let want = match kind {
        Kind::Dir => libc::S_IFDIR,
        Kind::File => libc::S_IFREG,
    };
    st.st_mode & libc::S_IFMT == want
}

/// Replaces `name` in `dir` with a new regular file holding `body`: written
/// to a temporary name beside it, then renamed over it, so a symlink at
/// `name` is replaced rather than followed and nothing half-written is seen.
pub(crate) fn replace_file(
    dir: BorrowedFd<'_>,
    name: &str,
    body: &[u8],
    mode: u32,
) -> io::Result<()> {
    let c = one_component(name)?;
    let tmp = cstr(format!(".{name}.firepit-new").as_bytes())?;
    unlink_at(dir, &tmp, 0)?;
    // SAFETY: valid fd and C string.
    let fd = owned(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            tmp.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode,
        )
    })?;
    let mut file = std::fs::File::from(fd);
    let written = io::Write::write_all(&mut file, body).and_then(|()| {
        // SAFETY: valid fd.
        check(unsafe { libc::fchmod(file.as_raw_fd(), mode) }).map(drop)
    });
    drop(file);
    let renamed = written.and_then(|()| {
        // SAFETY: valid fds and C strings.
        check(unsafe { libc::renameat(dir.as_raw_fd(), tmp.as_ptr(), dir.as_raw_fd(), c.as_ptr()) })
            .map(drop)
    });
    if renamed.is_err() {
        let _ = unlink_at(dir, &tmp, 0);
    }
    renamed
}

/// Removes `path` and, if it is a directory, everything below it, without
/// following a symlink anywhere (the last component included) and without
/// crossing into another file system. `path`'s parent must be a directory the
/// host trusts. A path that is not there is not an error.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no parent to remove it from", path.display()),
        ));
    };
    let parent = match open_dir(parent) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        r => r?,
    };
    remove_tree_at(parent.as_fd(), &cstr(name.as_bytes())?)
}

/// `remove_tree` of `name` in `dir`. Holds one directory fd at a time (its
/// way back up is `..`, checked against the device and inode it came down
/// from), so a machine's tree of any depth is removed.
fn remove_tree_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    let st = match stat_at(dir, name) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        r => r?,
    };
    if !is_dir(&st) {
        return unlink_at(dir, name, 0);
    }
    let dev = st.st_dev;
    let open_sub = |d: BorrowedFd<'_>, n: &CStr| {
        // SAFETY: valid fd and C string.
        owned(unsafe {
            libc::openat(
                d.as_raw_fd(),
                n.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })
    };
    let mut cur = open_sub(dir, name)?;
    // From the top down: each directory's name and (device, inode).
    let mut trail: Vec<(CString, (u64, u64))> = Vec::new();
    loop {
        match clear_files(cur.as_fd(), dev)? {
            Some(sub) => {
                let st = fd_stat(cur.as_fd())?;
                let next = open_sub(cur.as_fd(), &sub)?;
                trail.push((sub, (st.st_dev, st.st_ino)));
                cur = next;
            }
            None => {
                let Some((sub, up_id)) = trail.pop() else {
                    break;
                };
                let up = open_sub(cur.as_fd(), c"..")?;
                let st = fd_stat(up.as_fd())?;
                if (st.st_dev, st.st_ino) != up_id {
                    return Err(io::Error::other(
                        "the tree changed while it was being removed",
                    ));
                }
                cur = up;
                unlink_at(cur.as_fd(), &sub, libc::AT_REMOVEDIR)?;
            }
        }
    }
    drop(cur);
    unlink_at(dir, name, libc::AT_REMOVEDIR)
}

/// Calls `visit(parent, name, stat)` for every entry below the directory
/// `top` (not `top` itself), a directory before what is in it, without
/// following a symlink and without crossing into another file system (a
/// directory of another device is visited but not entered). Like
/// [`remove_tree`] it holds one directory fd at a time, its way back up
/// checked, so a tree of any depth is walked. For trees nothing changes
/// while they are walked (a stopped machine's, a fresh snapshot).
pub(crate) fn walk(
    top: BorrowedFd<'_>,
    mut visit: impl FnMut(BorrowedFd<'_>, &CStr, &libc::stat) -> io::Result<()>,
) -> io::Result<()> {
    let open_sub = |d: BorrowedFd<'_>, n: &CStr| {
        // SAFETY: valid fd and C string.
        owned(unsafe {
            libc::openat(
                d.as_raw_fd(),
                n.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })
    };
    let mut cur = open_sub(top, c".")?;
    let st = fd_stat(cur.as_fd())?;
    let dev = st.st_dev;
    // Per level from the top down: its subdirectories still to enter, and
    // its (device, inode).
    let mut levels: Vec<(Vec<CString>, (u64, u64))> = vec![(
        entries(cur.as_fd(), dev, &mut visit)?,
        (st.st_dev, st.st_ino),
    )];
    while let Some((subs, _)) = levels.last_mut() {
        match subs.pop() {
            Some(sub) => {
                cur = open_sub(cur.as_fd(), &sub)?;
                let st = fd_stat(cur.as_fd())?;
                let subs = entries(cur.as_fd(), dev, &mut visit)?;
                levels.push((subs, (st.st_dev, st.st_ino)));
            }
            None => {
                levels.pop();
                let Some((_, up_id)) = levels.last() else {
                    break;
                };
                let up = open_sub(cur.as_fd(), c"..")?;
                let st = fd_stat(up.as_fd())?;
                if (st.st_dev, st.st_ino) != *up_id {
                    return Err(io::Error::other("the tree changed while it was walked"));
                }
                cur = up;
            }
        }
    }
    Ok(())
}

/// Visits every entry of `dir`; returns the names of its subdirectories on
/// the device `dev`.
fn entries(
    dir: BorrowedFd<'_>,
    dev: u64,
    visit: &mut impl FnMut(BorrowedFd<'_>, &CStr, &libc::stat) -> io::Result<()>,
) -> io::Result<Vec<CString>> {
    let mut subs = Vec::new();
    for name in read_names(dir)? {
        let st = match stat_at(dir, &name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            r => r?,
        };
        visit(dir, &name, &st)?;
        if is_dir(&st) && st.st_dev == dev {
            subs.push(name);
        }
    }
    Ok(subs)
}

/// The names in the directory `dir`, but `.` and `..`.
fn read_names(dir: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    // SAFETY: dup of a valid fd; fdopendir takes the copy over.
    let copy = check(unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: `copy` is an open directory fd that nobody else owns.
    let stream = unsafe { libc::fdopendir(copy) };
    if stream.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so `copy` is still ours to close.
        unsafe { libc::close(copy) };
        return Err(e);
    }
    struct Stream(*mut libc::DIR);
    impl Drop for Stream {
        fn drop(&mut self) {
            // SAFETY: a stream from fdopendir, closed once.
            unsafe { libc::closedir(self.0) };
        }
    }
    let stream = Stream(stream);
    // The dup shares the offset with `dir`: start from the beginning.
    // SAFETY: a valid stream.
    unsafe { libc::rewinddir(stream.0) };
    let mut names = Vec::new();
    loop {
        // SAFETY: errno is thread-local; readdir64 on a valid stream.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: a valid stream; the entry lives until the next call.
        let entry = unsafe { libc::readdir64(stream.0) };
        if entry.is_null() {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(0) | None => Ok(names),
                _ => Err(e),
            };
        }
        // SAFETY: d_name is NUL-terminated within the entry.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
}

/// Unlinks every entry of `dir` that is not a directory, up to the first
/// directory, whose name it returns. A directory on another device than
/// `dev` (a mount point) is an error: nothing below it is touched.
fn clear_files(dir: BorrowedFd<'_>, dev: u64) -> io::Result<Option<CString>> {
    // SAFETY: dup of a valid fd; fdopendir takes the copy over.
    let copy = check(unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: `copy` is an open directory fd that nobody else owns.
    let stream = unsafe { libc::fdopendir(copy) };
    if stream.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so `copy` is still ours to close.
        unsafe { libc::close(copy) };
        return Err(e);
    }
    struct Stream(*mut libc::DIR);
    impl Drop for Stream {
        fn drop(&mut self) {
            // SAFETY: a stream from fdopendir, closed once.
            unsafe { libc::closedir(self.0) };
        }
    }
    let stream = Stream(stream);
    loop {
        // SAFETY: errno is thread-local; readdir64 on a valid stream.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: a valid stream; the entry lives until the next call.
        let entry = unsafe { libc::readdir64(stream.0) };
        if entry.is_null() {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(0) | None => Ok(None),
                _ => Err(e),
            };
        }
        // SAFETY: d_name is NUL-terminated within the entry.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
        if name == c"." || name == c".." {
            continue;
        }
        let st = match stat_at(dir, name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            r => r?,
        };
        if is_dir(&st) {
            if st.st_dev != dev {
                return Err(io::Error::other(format!(
                    "{} is another file system (a mount?); nothing below it was removed",
                    name.to_string_lossy()
                )));
            }
            return Ok(Some(name.to_owned()));
        }
        unlink_at(dir, name, 0)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn remove_tree_leaves_what_links_point_at() {
        let outside = tempfile::tempdir().unwrap();
        let canary = outside.path().join("canary");
        std::fs::write(&canary, "keep").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        symlink(&canary, tree.join("a/file-link")).unwrap();
        symlink(outside.path(), tree.join("a/b/dir-link")).unwrap();
        symlink("../../../..", tree.join("a/b/up")).unwrap();
        std::fs::write(tree.join("a/b/f"), "x").unwrap();
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "keep");
        // A link as the path itself is removed, not followed.
        symlink(outside.path(), &tree).unwrap();
        remove_tree(&tree).unwrap();
        assert!(std::fs::symlink_metadata(&tree).is_err());
        assert!(canary.exists());
        // Gone already: fine.
        remove_tree(&tree).unwrap();
    }

    #[test]
    fn remove_tree_takes_trees_deeper_than_the_fd_limit() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("deep");
        std::fs::create_dir(&top).unwrap();
        let mut fd = open_dir(&top).unwrap();
        // Deeper than PATH_MAX allows in one path, and than 1024 open fds.
        for _ in 0..3000 {
            let c = c"d";
            // SAFETY: valid fd and C string.
            check(unsafe { libc::mkdirat(fd.as_raw_fd(), c.as_ptr(), 0o755) }).unwrap();
            fd = open_at(fd.as_fd(), "d", libc::O_PATH | libc::O_DIRECTORY, NO_LINKS).unwrap();
        }
        drop(fd);
        // In a child process allowed 64 open files.
        // SAFETY: the child calls setrlimit, remove_tree and _exit only
        // (glibc's malloc is safe to use after fork).
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let lim = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            // SAFETY: as above.
            unsafe {
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
                libc::_exit(if remove_tree(&top).is_ok() { 0 } else { 1 });
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert!(!top.exists());
    }

    #[test]
    fn ensure_replaces_what_is_not_of_its_kind() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let r = open_dir(root.path()).unwrap();
        symlink(outside.path(), root.path().join("d")).unwrap();
        let d = ensure(r.as_fd(), "d", Kind::Dir, 0o750, None).unwrap();
        assert!(root.path().join("d").symlink_metadata().unwrap().is_dir());
        let f = ensure(d.as_fd(), "f", Kind::File, 0o644, None).unwrap();
        drop(f);
        assert!(root.path().join("d/f").is_file());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // A directory where a file belongs goes, contents and all.
        std::fs::create_dir_all(root.path().join("g/x")).unwrap();
        ensure(r.as_fd(), "g", Kind::File, 0o644, None).unwrap();
        assert!(root.path().join("g").is_file());
        // One of the right kind stays as it is.
        std::fs::write(root.path().join("g"), "kept").unwrap();
        ensure(r.as_fd(), "g", Kind::File, 0o644, None).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.path().join("g")).unwrap(),
            "kept"
        );
        assert!(ensure(r.as_fd(), "../x", Kind::Dir, 0o755, None).is_err());
    }

    #[test]
    fn replace_file_replaces_a_link_instead_of_following_it() {
        let outside = tempfile::tempdir().unwrap();
        let canary = outside.path().join("hosts");
        std::fs::write(&canary, "host's own").unwrap();
        let dir = tempfile::tempdir().unwrap();
        symlink(&canary, dir.path().join("hosts")).unwrap();
        let d = open_dir(dir.path()).unwrap();
        replace_file(d.as_fd(), "hosts", b"machine's", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "host's own");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("hosts")).unwrap(),
            "machine's"
        );
        assert!(
            !dir.path()
                .join("hosts")
                .symlink_metadata()
                .unwrap()
                .is_symlink()
        );
    }

    #[test]
    fn walk_visits_everything_once_and_follows_no_link() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "x").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("a/b/c")).unwrap();
        std::fs::write(root.path().join("a/b/c/f"), "x").unwrap();
        std::fs::write(root.path().join("top"), "x").unwrap();
        symlink(outside.path(), root.path().join("a/link")).unwrap();
        let r = open_dir(root.path()).unwrap();
        let mut seen = Vec::new();
        walk(r.as_fd(), |_, name, _| {
            seen.push(name.to_string_lossy().into_owned());
            Ok(())
        })
        .unwrap();
        seen.sort();
        assert_eq!(seen, ["a", "b", "c", "f", "link", "top"]);
    }

    #[test]
    fn in_root_keeps_links_inside() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        symlink(outside.path(), root.path().join("abs")).unwrap();
        symlink("../../../../../..", root.path().join("up")).unwrap();
        let r = open_dir(root.path()).unwrap();
        // The absolute link means the root's own path, which is not there.
        assert!(open_at(r.as_fd(), "abs", libc::O_PATH, IN_ROOT).is_err());
        // `..` stops at the root.
        let up = open_at(r.as_fd(), "up", libc::O_PATH, IN_ROOT).unwrap();
        let (a, b) = (fd_stat(up.as_fd()).unwrap(), fd_stat(r.as_fd()).unwrap());
        assert_eq!((a.st_dev, a.st_ino), (b.st_dev, b.st_ino));
        assert!(open_at(r.as_fd(), "up", libc::O_PATH, NO_LINKS).is_err());
    }
}
