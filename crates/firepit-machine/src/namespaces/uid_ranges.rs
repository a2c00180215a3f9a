//! A uid range per machine: 65536 host uids and gids that belong to one
//! machine alone, and the host-wide registry that hands them out.
//!
//! Every machine made by the namespaces backend gets a base of its own: root
//! inside is the base outside, its upper layer and run dir are owned by its
//! range, and the image (whose files are owned by the image's `uid_base..`)
//! is mapped onto that range with an idmapped mount (see `super::idmap`). A
//! file written in one machine therefore belongs to no other machine and to
//! no image, and a process that escaped one machine's namespaces owns that
//! machine's files only.
//!
//! **Where ranges come from.** Bases `1 << 30, (1 << 30) + 65536, …` up to
//! the top of the id space, skipping any range that meets an entry of
//! `/etc/subuid` or `/etc/subgid`, the image's own range, or ids this
//! process's user namespace does not map.
//!
//! **The registry** is one root-only directory for the whole host
//! ([`DEFAULT_REGISTRY`]), shared by every daemon instance and test on it.
//! It holds one symlink per range in use, named by the range's base and
//! pointing at the machine's state dir: `<registry>/<base> -> <state dir>/<id>`.
//! Making a symlink is atomic and fails when the name exists, so an entry is
//! never half written; every change happens under an exclusive `flock` of
//! `<registry>/.lock`, so a stale entry is never removed after someone took
//! its base again.
//!
//! **Allocation is round robin**: a cursor (per process) remembers where the
//! last range was found and the next search starts after it, trying each
//! base by making its symlink. A create therefore costs the same whatever
//! the number of ranges in use (no listing of the registry), and a range
//! given back is handed out again only after the cursor has gone round,
//! well after its machine's files are gone.
//!
//! The machine records its base in `<state dir>/<id>/ids.json`, written
//! before `spec.json`. An entry is stale when its machine dir is gone or
//! records another base; [`Registry::reclaim`] removes those (the backend's
//! `recover`, and allocation when nothing is free). A machine made before
//! ranges were per machine has no `ids.json`: it keeps the image's range and
//! no idmap ([`MachineIds::load`]).

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::spec::{MachineSpec, UID_COUNT};

/// The registry every backend on a host shares unless configured otherwise.
pub const DEFAULT_REGISTRY: &str = "/var/lib/firepit/uid-ranges";

/// The file in a machine's state dir that records its base.
pub(crate) const IDS_FILE: &str = "ids.json";

/// The first base handed out: far above the ids distributions give users,
/// `/etc/subuid` ranges and image ranges (100000 by default).
const FIRST_BASE: u64 = 1 << 30;
/// How many bases there are from [`FIRST_BASE`]: every range ends below
/// `u32::MAX`, which is no id (`(uid_t)-1`).
const BASES: u64 = (u32::MAX as u64 - FIRST_BASE) / UID_COUNT as u64;

/// What `ids.json` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct IdsRecord {
    /// Host uid (and gid) of root inside the machine.
    uid_base: u32,
}

/// The ids a machine runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MachineIds {
    /// Host uid (and gid) of root inside; 65536 ids from it are the machine's.
    pub base: u32,
    /// Whether the image is mapped onto the range with an idmapped mount
    /// (false for a machine made before ranges were per machine, which runs
    /// in the image's own range).
    pub idmapped: bool,
}

impl MachineIds {
    /// The ids of the machine in `dir`: its recorded range, or the image's
    /// range for a machine that has none recorded.
    pub fn load(dir: &Path, spec: &MachineSpec) -> Result<Self, Error> {
        Ok(match recorded(dir)? {
            Some(base) => MachineIds {
                base,
                idmapped: true,
            },
            None => MachineIds {
                base: spec.uid_base,
                idmapped: false,
            },
        })
    }
}

/// The base recorded in a machine dir, if any.
pub(crate) fn recorded(dir: &Path) -> Result<Option<u32>, Error> {
    let path = dir.join(IDS_FILE);
    match fs::read(&path) {
        Ok(b) => serde_json::from_slice::<IdsRecord>(&b)
            .map(|r| Some(r.uid_base))
            .map_err(|source| Error::State { path, source }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", path)(e)),
    }
}

/// `[start, end)` of host ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u64,
    end: u64,
}

impl Span {
    fn of(start: u64, count: u64) -> Span {
        Span {
            start,
            end: start.saturating_add(count),
        }
    }

    fn meets(self, other: Span) -> bool {
        self.start < other.end && other.start < self.end
    }

    fn within(self, other: Span) -> bool {
        other.start <= self.start && self.end <= other.end
    }
}

/// The ranges of a `/etc/subuid`-style file (`owner:start:count` lines).
/// Lines that are not that shape are skipped.
fn parse_subid(text: &str) -> Vec<Span> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.split(':');
            let (_owner, start, count) = (parts.next()?, parts.next()?, parts.next()?);
            Some(Span::of(
                start.trim().parse().ok()?,
                count.trim().parse().ok()?,
            ))
        })
        .collect()
}

/// The ids this process's user namespace maps (first column of a
/// `/proc/self/uid_map`-style file).
fn parse_id_map(text: &str) -> Vec<Span> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let inside: u64 = f.next()?.parse().ok()?;
            let _outside: u64 = f.next()?.parse().ok()?;
            let count: u64 = f.next()?.parse().ok()?;
            Some(Span::of(inside, count))
        })
        .collect()
}

/// The host-wide registry of machines' uid ranges. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Registry {
    dir: PathBuf,
    /// `/etc/subuid`-style files whose ranges are never handed out.
    reserved: Vec<PathBuf>,
    /// `/proc/self/uid_map`-style files: a range must lie within each.
    maps: Vec<PathBuf>,
    first: u64,
    bases: u64,
    /// Where the next search starts: the index after the last range found.
    cursor: Arc<AtomicU64>,
}

impl Registry {
    /// Opens (and makes, root-only) the registry in `dir`, checking against
    /// this host's `/etc/subuid`, `/etc/subgid` and own id maps.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        Self::with(
            dir,
            vec!["/etc/subuid".into(), "/etc/subgid".into()],
            vec!["/proc/self/uid_map".into(), "/proc/self/gid_map".into()],
            FIRST_BASE,
            BASES,
        )
    }

    fn with(
        dir: &Path,
        reserved: Vec<PathBuf>,
        maps: Vec<PathBuf>,
        first: u64,
        bases: u64,
    ) -> Result<Self, Error> {
        let dir = std::path::absolute(dir).map_err(Error::io("resolving", dir))?;
        if let Some(parent) = dir.parent() {
            fs::create_dir_all(parent).map_err(Error::io("creating", parent))?;
        }
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            r => r.map_err(Error::io("creating", &dir))?,
        }
        let meta = fs::symlink_metadata(&dir).map_err(Error::io("reading", &dir))?;
        if !meta.is_dir() {
            return Err(Error::InvalidSpec(format!(
                "uid range registry {} is not a directory",
                dir.display()
            )));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                .map_err(Error::io("setting mode of", &dir))?;
        }
        Ok(Self {
            dir,
            reserved,
            maps,
            first,
            bases,
            cursor: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Takes a free range for the machine in `owner` (its state dir),
    /// apart from `image_base..+65536`; returns its base.
    pub fn allocate(&self, owner: &Path, image_base: u32) -> Result<u32, Error> {
        let owner = std::path::absolute(owner).map_err(Error::io("resolving", owner))?;
        let _lock = self.lock()?;
        let mut blocked = vec![Span::of(image_base.into(), UID_COUNT.into())];
        for f in &self.reserved {
            blocked.extend(parse_subid(&fs::read_to_string(f).unwrap_or_default()));
        }
        let maps: Vec<Vec<Span>> = self
            .maps
            .iter()
            .filter_map(|f| fs::read_to_string(f).ok())
            .map(|t| parse_id_map(&t))
            .collect();
        for round in 0..2 {
            let start = self.cursor.load(Ordering::Relaxed);
            for k in 0..self.bases {
                let i = (start + k) % self.bases;
                let span = Span::of(self.first + i * u64::from(UID_COUNT), UID_COUNT.into());
                let Ok(base) = u32::try_from(span.start) else {
                    continue;
                };
                if blocked.iter().any(|b| b.meets(span))
                    || !maps.iter().all(|m| m.iter().any(|e| span.within(*e)))
                {
                    continue;
                }
                let entry = self.entry(base);
                match std::os::unix::fs::symlink(&owner, &entry) {
                    Ok(()) => {
                        self.cursor.store(i + 1, Ordering::Relaxed);
                        return Ok(base);
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(Error::io("registering a uid range", entry)(e)),
                }
            }
            if round == 0 && self.reclaim_locked()?.is_empty() {
                break;
            }
        }
        Err(Error::UidRangesExhausted)
    }

    /// Registers `base` for `owner` again (on every start, and after a
    /// restart, in case the registry lost it). Fails if another live machine
    /// holds it.
    pub fn claim(&self, base: u32, owner: &Path) -> Result<(), Error> {
        let owner = std::path::absolute(owner).map_err(Error::io("resolving", owner))?;
        let _lock = self.lock()?;
        let entry = self.entry(base);
        match fs::read_link(&entry) {
            Ok(target) if target == owner => return Ok(()),
            Ok(target) if !self.is_stale(base, &target) => {
                return Err(Error::UidRangeTaken {
                    base,
                    owner: target,
                });
            }
            Ok(_) => fs::remove_file(&entry).map_err(Error::io("removing", &entry))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => fs::remove_file(&entry).map_err(Error::io("removing", &entry))?,
        }
        std::os::unix::fs::symlink(&owner, &entry)
            .map_err(Error::io("registering a uid range", entry))
    }

    /// Gives `base` back if `owner` holds it. Call it after the machine dir
    /// is gone, so that a crash in between leaves a stale entry, never a
    /// machine whose range is free.
    pub fn free(&self, base: u32, owner: &Path) -> Result<(), Error> {
        let owner = std::path::absolute(owner).map_err(Error::io("resolving", owner))?;
        let _lock = self.lock()?;
        let entry = self.entry(base);
        match fs::read_link(&entry) {
            Ok(target) if target == owner => {
                fs::remove_file(&entry).map_err(Error::io("removing", &entry))
            }
            _ => Ok(()),
        }
    }

    /// Removes stale entries (their machine dir is gone or records another
    /// base); returns the bases freed.
    pub fn reclaim(&self) -> Result<Vec<u32>, Error> {
        let _lock = self.lock()?;
        self.reclaim_locked()
    }

    fn reclaim_locked(&self) -> Result<Vec<u32>, Error> {
        let mut freed = Vec::new();
        for base in self.entries()? {
            let entry = self.entry(base);
            let stale = match fs::read_link(&entry) {
                Ok(target) => self.is_stale(base, &target),
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                // Not a symlink: nothing this registry wrote.
                Err(_) => true,
            };
            if stale {
                match fs::remove_file(&entry) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(Error::io("removing", entry)(e));
                    }
                    _ => freed.push(base),
                }
            }
        }
        freed.sort_unstable();
        Ok(freed)
    }

    /// An entry is stale when its machine dir is gone, or records another
    /// base. A dir without `ids.json` is a machine being made: not stale.
    fn is_stale(&self, base: u32, target: &Path) -> bool {
        match fs::symlink_metadata(target) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(_) => false,
            Ok(_) => matches!(recorded(target), Ok(Some(b)) if b != base),
        }
    }

    fn entry(&self, base: u32) -> PathBuf {
        self.dir.join(base.to_string())
    }

    /// The bases that have entries.
    fn entries(&self) -> Result<HashSet<u32>, Error> {
        let list = fs::read_dir(&self.dir).map_err(Error::io("listing", &self.dir))?;
        Ok(list
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect())
    }

    fn lock(&self) -> Result<fs::File, Error> {
        let path = self.dir.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&path)
            .map_err(Error::io("opening", &path))?;
        loop {
            // SAFETY: flock on a descriptor we own; released when it closes.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(file);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(Error::io("locking", path)(e));
            }
        }
    }
}

/// Takes a range for a new machine in `dir` and records it there.
pub(crate) fn assign(registry: &Registry, dir: &Path, image_base: u32) -> Result<u32, Error> {
    let base = registry.allocate(dir, image_base)?;
    let record = IdsRecord { uid_base: base };
    if let Err(e) = super::write_json(&dir.join(IDS_FILE), &record) {
        let _ = registry.free(base, dir);
        return Err(e);
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: u64 = UID_COUNT as u64;

    struct Fixture {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        registry: Registry,
    }

    impl Fixture {
        fn new(subuid: &str, uid_map: &str, bases: u64) -> Fixture {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().to_path_buf();
            fs::write(root.join("subuid"), subuid).unwrap();
            fs::write(root.join("subgid"), "").unwrap();
            fs::write(root.join("uid_map"), uid_map).unwrap();
            let registry = Registry::with(
                &root.join("registry"),
                vec![root.join("subuid"), root.join("subgid"), root.join("none")],
                vec![root.join("uid_map")],
                FIRST_BASE,
                bases,
            )
            .unwrap();
            Fixture {
                _tmp: tmp,
                root,
                registry,
            }
        }

        /// A machine dir that records `base` once it has one.
        fn machine(&self, name: &str) -> PathBuf {
            let dir = self.root.join("state").join(name);
            fs::create_dir_all(&dir).unwrap();
            dir
        }
    }

    const FULL_MAP: &str = "         0          0 4294967295\n";

    #[test]
    fn the_id_space_ends_below_the_invalid_id() {
        let last = FIRST_BASE + (BASES - 1) * STEP;
        assert!(last + STEP - 1 < u64::from(u32::MAX));
        assert!(last + 2 * STEP > u64::from(u32::MAX));
    }

    #[test]
    fn parses_subid_files_and_id_maps() {
        let text = "# comment\nalice:100000:65536\n\nbob:1073741824:10\nbroken\ncarol:x:1\n1000:200000:5\n";
        assert_eq!(
            parse_subid(text),
            vec![
                Span::of(100000, 65536),
                Span::of(1 << 30, 10),
                Span::of(200000, 5)
            ]
        );
        assert_eq!(
            parse_id_map("0 100000 65536\n  65536 0 1\nbad\n"),
            vec![Span::of(0, 65536), Span::of(65536, 1)]
        );
    }

    #[test]
    fn machines_get_distinct_ranges_that_are_freed() {
        let f = Fixture::new("", FULL_MAP, 8);
        let (a, b) = (f.machine("a"), f.machine("b"));
        let base_a = f.registry.allocate(&a, 100000).unwrap();
        let base_b = f.registry.allocate(&b, 100000).unwrap();
        assert_eq!(u64::from(base_a), FIRST_BASE);
        assert_eq!(u64::from(base_b), FIRST_BASE + STEP);
        assert_eq!(
            fs::read_link(f.registry.dir.join(base_a.to_string())).unwrap(),
            a
        );
        // Freeing needs the owner: b cannot free a's range.
        f.registry.free(base_a, &b).unwrap();
        assert!(f.registry.dir.join(base_a.to_string()).exists());
        f.registry.free(base_a, &a).unwrap();
        assert!(!f.registry.dir.join(base_a.to_string()).exists());
        // Round robin: the freed range comes back once the others are taken.
        let others: Vec<u32> = (2..8)
            .map(|n| {
                let m = f.machine(&format!("m{n}"));
                f.registry.allocate(&m, 100000).unwrap()
            })
            .collect();
        assert_eq!(u64::from(others[0]), FIRST_BASE + 2 * STEP);
        assert!(!others.contains(&base_a) && !others.contains(&base_b));
        assert_eq!(f.registry.allocate(&a, 100000).unwrap(), base_a);
        let full = f.machine("full");
        assert!(matches!(
            f.registry.allocate(&full, 100000),
            Err(Error::UidRangesExhausted)
        ));
        let mode = fs::metadata(&f.registry.dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn ranges_skip_subuid_entries_the_image_and_unmapped_ids() {
        // subuid holds the first base's last id, the image (not aligned)
        // meets the second and third, and this namespace maps nothing past
        // the fifth.
        let first = FIRST_BASE;
        let subuid = format!("someone:{}:1\n", first + STEP - 1);
        let map = format!("0 0 {}\n", first + 5 * STEP);
        let f = Fixture::new(&subuid, &map, 8);
        let image = u32::try_from(first + STEP + 5).unwrap();
        let m = f.machine("m");
        let got = f.registry.allocate(&m, image).unwrap();
        assert_eq!(u64::from(got), first + 3 * STEP);
        let n = f.machine("n");
        let got = f.registry.allocate(&n, image).unwrap();
        assert_eq!(u64::from(got), first + 4 * STEP);
        let o = f.machine("o");
        assert!(matches!(
            f.registry.allocate(&o, image),
            Err(Error::UidRangesExhausted)
        ));
    }

    #[test]
    fn exhaustion_is_an_error_until_a_stale_entry_is_reclaimed() {
        let f = Fixture::new("", FULL_MAP, 2);
        let (a, b, c) = (f.machine("a"), f.machine("b"), f.machine("c"));
        let base_a = assign(&f.registry, &a, 100000).unwrap();
        assign(&f.registry, &b, 100000).unwrap();
        assert_eq!(recorded(&a).unwrap(), Some(base_a));
        let err = f.registry.allocate(&c, 100000).unwrap_err();
        assert!(matches!(err, Error::UidRangesExhausted), "{err}");
        assert!(err.to_string().contains("uid range"), "{err}");
        // a's dir goes without a free (a crash): allocation reclaims it.
        fs::remove_dir_all(&a).unwrap();
        assert_eq!(f.registry.allocate(&c, 100000).unwrap(), base_a);
        assert_eq!(
            fs::read_link(f.registry.dir.join(base_a.to_string())).unwrap(),
            c
        );
    }

    #[test]
    fn reclaim_removes_only_stale_entries() {
        let f = Fixture::new("", FULL_MAP, 8);
        let gone = f.machine("gone");
        let moved = f.machine("moved");
        let live = f.machine("live");
        let making = f.machine("making");
        let base_gone = assign(&f.registry, &gone, 100000).unwrap();
        let base_moved = assign(&f.registry, &moved, 100000).unwrap();
        let base_live = assign(&f.registry, &live, 100000).unwrap();
        // Being made: registered, ids.json not written yet.
        let base_making = f.registry.allocate(&making, 100000).unwrap();
        fs::remove_dir_all(&gone).unwrap();
        // The dir was remade for another machine that records another base.
        super::super::write_json(
            &moved.join(IDS_FILE),
            &IdsRecord {
                uid_base: base_live,
            },
        )
        .unwrap();
        // Something the registry never writes.
        fs::write(f.registry.dir.join("1"), "").unwrap();
        fs::write(f.registry.dir.join("notes"), "").unwrap();
        let freed = f.registry.reclaim().unwrap();
        let mut want = vec![1, base_gone, base_moved];
        want.sort_unstable();
        assert_eq!(freed, want);
        let left = f.registry.entries().unwrap();
        assert_eq!(left, HashSet::from([base_live, base_making]));
        assert!(f.registry.dir.join("notes").exists());
    }

    #[test]
    fn claim_restores_an_entry_and_refuses_a_live_holder() {
        let f = Fixture::new("", FULL_MAP, 8);
        let (a, b) = (f.machine("a"), f.machine("b"));
        let base = assign(&f.registry, &a, 100000).unwrap();
        // Claiming one's own range again is fine; a lost entry comes back.
        f.registry.claim(base, &a).unwrap();
        fs::remove_file(f.registry.dir.join(base.to_string())).unwrap();
        f.registry.claim(base, &a).unwrap();
        assert_eq!(
            fs::read_link(f.registry.dir.join(base.to_string())).unwrap(),
            a
        );
        let err = f.registry.claim(base, &b).unwrap_err();
        assert!(matches!(err, Error::UidRangeTaken { .. }), "{err}");
        // Once a is gone, b may take it over.
        fs::remove_dir_all(&a).unwrap();
        f.registry.claim(base, &b).unwrap();
    }

    #[test]
    fn old_machines_without_a_record_keep_the_image_range() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = MachineSpec {
            id: crate::MachineId::new("m").unwrap(),
            image: "/".into(),
            layers: Vec::new(),
            uid_base: 100000,
            limits: crate::Limits {
                memory_bytes: 64 << 20,
                cpus: 1.0,
                pids: 64,
                disk_bytes: None,
            },
            network: crate::Network::None,
            guest: "/bin/sh".into(),
        };
        assert_eq!(
            MachineIds::load(tmp.path(), &spec).unwrap(),
            MachineIds {
                base: 100000,
                idmapped: false
            }
        );
        fs::write(tmp.path().join(IDS_FILE), r#"{"uid_base":1073741824}"#).unwrap();
        assert_eq!(
            MachineIds::load(tmp.path(), &spec).unwrap(),
            MachineIds {
                base: 1 << 30,
                idmapped: true
            }
        );
        fs::write(tmp.path().join(IDS_FILE), "{").unwrap();
        assert!(matches!(
            MachineIds::load(tmp.path(), &spec),
            Err(Error::State { .. })
        ));
    }
}
