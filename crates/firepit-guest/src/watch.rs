//! File watches: a tree of directories watched with inotify, reported as
//! batches of the directories whose entries changed ([`FilesChanged`]).
//!
//! A watch adds an inotify watch on every directory under its root, breadth
//! first, never following a symlink (`IN_DONT_FOLLOW | IN_ONLYDIR`), and on
//! every directory made or moved in later. Bounds, since the machine's
//! processes decide what the tree holds: at most [`MAX_WATCHES`] directories
//! (the rest of a larger tree is not watched, and every report says
//! `partial`), paths at most [`MAX_WATCH_PATH`] bytes (a change deeper down is
//! not seen), directories that hold what tools make by the thousand
//! ([`SKIP`]: `.git`, `node_modules`, build outputs) are not entered (their
//! own making and removal still shows in their parent). A change is held for
//! [`BATCH`] while more come, then sent as one report of at most
//! [`MAX_CHANGED_DIRS`] directories (more, or a kernel queue overflow, is sent
//! as `overflow`); a report waits for the stream's credit like every other
//! output, and changes that come meanwhile join the next one. Nothing runs
//! while nothing changes.
//!
//! Walking a tree runs on the blocking pool, so a large one never holds up the
//! guest's other work.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use firepit_wire::guest::{
    ErrorKind, FilesChanged, MAX_CHANGED_DIRS, MAX_WATCH_PATH, MAX_WATCHES, Response, WireError,
    check_path,
};
use tokio::io::unix::AsyncFd;

use crate::conn::Stream;

/// How long a change waits for others before it is reported.
pub const BATCH: Duration = Duration::from_millis(100);

/// Directory names a watch does not enter: what package managers, version
/// control and builds fill with many files nobody browses.
pub const SKIP: &[&str] = &[
    ".git",
    "node_modules",
    "target",
    "_build",
    "deps",
    "__pycache__",
    ".venv",
    ".cache",
    ".npm",
    ".cargo",
    ".rustup",
    ".hex",
    ".mix",
];

const MASK: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_CLOSE_WRITE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR
    | libc::IN_DONT_FOLLOW
    | libc::IN_EXCL_UNLINK;

/// The watched directories of one watch, by watch descriptor.
struct Tree {
    fd: RawFd,
    paths: HashMap<i32, String>,
    limit: usize,
    /// A directory was left unwatched because of `limit`.
    partial: bool,
}

impl Tree {
    /// Watches `top` and the directories under it, breadth first, while the
    /// limit allows.
    fn add_tree(&mut self, top: String) {
        let mut queue = VecDeque::from([top]);
        while let Some(dir) = queue.pop_front() {
            if self.paths.len() >= self.limit {
                self.partial = true;
                return;
            }
            let Ok(c) = CString::new(dir.as_bytes()) else {
                continue;
            };
            // SAFETY: `fd` is this watch's inotify descriptor (open while the
            // tree lives) and `c` a NUL-terminated path.
            let wd = unsafe { libc::inotify_add_watch(self.fd, c.as_ptr(), MASK) };
            if wd < 0 {
                // Gone meanwhile, not a directory (a symlink), or the
                // kernel's own limit: left out.
                continue;
            }
            if self.paths.insert(wd, dir.clone()).is_some() {
                // Already watched (the same directory reached twice).
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                // `file_type` does not follow symlinks.
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if SKIP.contains(&name) {
                    continue;
                }
                let child = join(&dir, name);
                if child.len() <= MAX_WATCH_PATH {
                    queue.push_back(child);
                }
            }
        }
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// One inotify event, as read.
#[derive(Debug, PartialEq, Eq)]
struct RawEvent {
    wd: i32,
    mask: u32,
    name: Vec<u8>,
}

/// Splits what a `read` of an inotify descriptor gave into events.
fn parse(buf: &[u8]) -> Vec<RawEvent> {
    const HEAD: usize = std::mem::size_of::<libc::inotify_event>();
    let mut out = Vec::new();
    let mut at = 0;
    while at + HEAD <= buf.len() {
        let word =
            |i: usize| u32::from_ne_bytes(buf[at + i..at + i + 4].try_into().expect("four bytes"));
        let (wd, mask, len) = (word(0) as i32, word(4), word(12) as usize);
        let end = (at + HEAD + len).min(buf.len());
        let name = &buf[at + HEAD..end];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        out.push(RawEvent {
            wd,
            mask,
            name: name.to_vec(),
        });
        at = end;
    }
    out
}

/// What the watch collects between reports.
#[derive(Default)]
struct Pending {
    dirs: BTreeSet<String>,
    overflow: bool,
}

impl Pending {
    fn add(&mut self, dir: &str) {
        if self.dirs.contains(dir) {
            return;
        }
        if self.dirs.len() >= MAX_CHANGED_DIRS {
            self.overflow = true;
        } else {
            self.dirs.insert(dir.to_owned());
        }
    }

    fn is_empty(&self) -> bool {
        self.dirs.is_empty() && !self.overflow
    }
}

/// Applies events to the tree and the pending report; returns the
/// directories to watch from now on (made or moved in).
fn apply(tree: &mut Tree, pending: &mut Pending, events: Vec<RawEvent>) -> Vec<String> {
    let mut new_dirs = Vec::new();
    for ev in events {
        if ev.mask & libc::IN_Q_OVERFLOW != 0 {
            pending.overflow = true;
            continue;
        }
        let Some(dir) = tree.paths.get(&ev.wd).cloned() else {
            continue;
        };
        if ev.mask & libc::IN_IGNORED != 0 {
            tree.paths.remove(&ev.wd);
            continue;
        }
        if ev.mask & (libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
            // Its parent reports the removal; a moved directory's path is
            // stale, so it is forgotten (the kernel drops deleted ones).
            if ev.mask & libc::IN_MOVE_SELF != 0 {
                // SAFETY: `fd` is the watch's open inotify descriptor.
                unsafe { libc::inotify_rm_watch(tree.fd, ev.wd) };
                tree.paths.remove(&ev.wd);
            }
            continue;
        }
        pending.add(&dir);
        if ev.mask & libc::IN_ISDIR != 0 && ev.mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0 {
            let Ok(name) = std::str::from_utf8(&ev.name) else {
                continue;
            };
            if !SKIP.contains(&name) {
                let child = join(&dir, name);
                if child.len() <= MAX_WATCH_PATH {
                    new_dirs.push(child);
                }
            }
        }
    }
    new_dirs
}

fn io_error(what: &str, e: &io::Error) -> WireError {
    WireError::io(what, e)
}

/// The directory a watch without a root watches.
fn default_root() -> String {
    crate::image_config::cwd()
        .filter(|d| std::path::Path::new(d).is_dir())
        .unwrap_or("/root")
        .to_owned()
}

/// Runs a file watch on `root` until the client cancels it.
pub async fn watch(root: Option<String>, s: &mut Stream) -> Result<Response, WireError> {
    watch_with_limit(root, MAX_WATCHES, s).await
}

/// [`watch`] with another bound on the directories watched (tests).
pub async fn watch_with_limit(
    root: Option<String>,
    limit: usize,
    s: &mut Stream,
) -> Result<Response, WireError> {
    let root = root.unwrap_or_else(default_root);
    check_path(&root)?;
    if root.len() > MAX_WATCH_PATH {
        return Err(WireError::new(
            ErrorKind::InvalidInput,
            "the path is too long",
        ));
    }
    let md = std::fs::metadata(&root).map_err(|e| io_error(&root, &e))?;
    if !md.is_dir() {
        return Err(WireError::new(
            ErrorKind::NotADirectory,
            format!("{root}: not a directory"),
        ));
    }
    // SAFETY: plain syscall; the result is checked.
    let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if raw < 0 {
        return Err(io_error("inotify", &io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a descriptor just opened and owned by nothing else.
    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and
    // the same for the AsyncFd's whole life.
    let fd = unsafe { AsyncFd::register(owned) }
        .map_err(|e| io_error("inotify", &io::Error::from(e)))?;
    let tree = Arc::new(Mutex::new(Tree {
        fd: fd.get_ref().as_raw_fd(),
        paths: HashMap::new(),
        limit,
        partial: false,
    }));
    walk(&tree, root).await;
    if !s.send(&Response::Ready).await {
        return Ok(Response::Done);
    }
    let mut pending = Pending::default();
    let mut due: Option<tokio::time::Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            ready = fd.readable() => {
                let mut guard = ready.map_err(|e| io_error("inotify", &e))?;
                // SAFETY: reads into `buf`, whose length is passed.
                let n = unsafe { libc::read(guard.get_inner().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::WouldBlock {
                        guard.clear_ready();
                        continue;
                    }
                    return Err(io_error("inotify", &e));
                }
                let events = parse(&buf[..n as usize]);
                let new_dirs = {
                    let mut t = tree.lock().unwrap_or_else(|e| e.into_inner());
                    apply(&mut t, &mut pending, events)
                };
                for dir in new_dirs {
                    walk(&tree, dir).await;
                }
                if !pending.is_empty() && due.is_none() {
                    due = Some(tokio::time::Instant::now() + BATCH);
                }
            }
            () = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                due = None;
                let report = std::mem::take(&mut pending);
                let partial = tree.lock().unwrap_or_else(|e| e.into_inner()).partial;
                let msg = FilesChanged { dirs: report.dirs.into_iter().collect(), overflow: report.overflow, partial };
                if !s.send(&Response::FilesChanged(msg)).await {
                    return Ok(Response::Done);
                }
            }
            _ = s.rx.recv() => return Ok(Response::Done), // cancelled or disconnected
        }
    }
}

/// Adds `top`'s tree to the watch, on the blocking pool.
async fn walk(tree: &Arc<Mutex<Tree>>, top: String) {
    let tree = tree.clone();
    let _ = tokio::task::spawn_blocking(move || {
        tree.lock().unwrap_or_else(|e| e.into_inner()).add_tree(top);
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(wd: i32, mask: u32, name: &str) -> Vec<u8> {
        let mut padded = name.as_bytes().to_vec();
        if !name.is_empty() {
            padded.resize(name.len().div_ceil(16) * 16, 0);
        }
        let mut b = Vec::new();
        b.extend_from_slice(&wd.to_ne_bytes());
        b.extend_from_slice(&mask.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&(padded.len() as u32).to_ne_bytes());
        b.extend_from_slice(&padded);
        b
    }

    fn tree(paths: &[(i32, &str)]) -> Tree {
        Tree {
            fd: -1,
            paths: paths.iter().map(|(w, p)| (*w, (*p).to_owned())).collect(),
            limit: 10,
            partial: false,
        }
    }

    #[test]
    fn events_parse_with_their_names_unpadded() {
        let mut buf = event(1, libc::IN_CREATE, "a.txt");
        buf.extend(event(2, libc::IN_DELETE_SELF, ""));
        let evs = parse(&buf);
        assert_eq!(
            evs,
            vec![
                RawEvent {
                    wd: 1,
                    mask: libc::IN_CREATE,
                    name: b"a.txt".to_vec()
                },
                RawEvent {
                    wd: 2,
                    mask: libc::IN_DELETE_SELF,
                    name: vec![]
                },
            ]
        );
        // A length past the buffer's end stops at the end.
        let mut cut = event(3, libc::IN_CREATE, "abc");
        cut.truncate(cut.len() - 4);
        assert_eq!(parse(&cut).len(), 1);
        assert!(parse(&[0u8; 7]).is_empty());
    }

    #[test]
    fn changes_name_their_directory_and_new_directories_are_watched_unless_skipped() {
        let mut t = tree(&[(1, "/root"), (2, "/root/src")]);
        let mut p = Pending::default();
        let new = apply(
            &mut t,
            &mut p,
            parse(
                &[
                    event(1, libc::IN_CREATE | libc::IN_ISDIR, "lib"),
                    event(1, libc::IN_CREATE | libc::IN_ISDIR, "node_modules"),
                    event(2, libc::IN_CLOSE_WRITE, "main.rs"),
                    event(9, libc::IN_CREATE, "unknown-wd"),
                ]
                .concat(),
            ),
        );
        assert_eq!(new, vec!["/root/lib".to_owned()]);
        assert_eq!(p.dirs.iter().collect::<Vec<_>>(), ["/root", "/root/src"]);
        assert!(!p.overflow);
    }

    #[test]
    fn too_many_directories_or_a_queue_overflow_is_an_overflow() {
        let mut p = Pending::default();
        for i in 0..=MAX_CHANGED_DIRS {
            p.add(&format!("/d{i}"));
        }
        assert_eq!(p.dirs.len(), MAX_CHANGED_DIRS);
        assert!(p.overflow);
        let mut t = tree(&[]);
        let mut p = Pending::default();
        apply(&mut t, &mut p, parse(&event(-1, libc::IN_Q_OVERFLOW, "")));
        assert!(p.overflow && !p.is_empty());
    }

    #[test]
    fn removed_watches_are_forgotten() {
        let mut t = tree(&[(1, "/root"), (2, "/root/gone")]);
        let mut p = Pending::default();
        apply(&mut t, &mut p, parse(&event(2, libc::IN_IGNORED, "")));
        assert!(!t.paths.contains_key(&2));
        assert!(p.is_empty());
    }

    #[test]
    fn a_tree_is_watched_breadth_first_up_to_the_limit_without_following_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().to_str().unwrap().to_owned();
        for d in ["a/b/c", "d", "node_modules/x"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::os::unix::fs::symlink("/", dir.path().join("link")).unwrap();
        // SAFETY: plain syscall; checked.
        let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        assert!(raw >= 0);
        // SAFETY: just opened.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut t = Tree {
            fd: fd.as_raw_fd(),
            paths: HashMap::new(),
            limit: 100,
            partial: false,
        };
        t.add_tree(top.clone());
        let mut seen: Vec<_> = t
            .paths
            .values()
            .map(|p| p[top.len()..].to_owned())
            .collect();
        seen.sort();
        assert_eq!(seen, ["", "/a", "/a/b", "/a/b/c", "/d"]);
        assert!(!t.partial);
        let mut small = Tree {
            fd: fd.as_raw_fd(),
            paths: HashMap::new(),
            limit: 3,
            partial: false,
        };
        small.add_tree(top);
        assert_eq!(small.paths.len(), 3);
        assert!(small.partial);
    }
}
