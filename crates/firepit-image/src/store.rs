//! The image store: a directory of images, and the atomic build, replace and remove of them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::build::{self, BuildOptions, Tool};
use crate::contents;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, Lock};
use crate::manifest::{self, Manifest};
use crate::progress::{Phase, Progress};
use crate::recipe::{Recipe, validate_name};
use crate::shift;

const BUILD_PREFIX: &str = ".build-";
const TRASH_PREFIX: &str = ".trash-";
const LOCK_SUFFIX: &str = ".lock";

/// A usable image: its manifest parsed, its tree in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The image name.
    pub name: String,
    /// The root of its tree (`<store>/<name>/rootfs`).
    pub rootfs: PathBuf,
    /// What it is and how it was built.
    pub manifest: Manifest,
}

impl Image {
    /// The directories a machine stacks as its read-only lower layers, topmost first: the
    /// image's own tree, then its shared layers ([`Manifest::layers`]). A layer named with an
    /// absolute path or `..` is left out (a manifest is checked when read; see
    /// [`Manifest::read`]).
    pub fn lowers(&self) -> Vec<PathBuf> {
        let mut v = vec![self.rootfs.clone()];
        if let Some(store) = self.rootfs.parent().and_then(Path::parent) {
            v.extend(
                self.manifest
                    .layers
                    .iter()
                    .filter(|l| manifest::layer_path_ok(l))
                    .map(|l| store.join(l)),
            );
        }
        v
    }
}

/// The images under one directory (normally `<data-dir>/images`).
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
    options: BuildOptions,
}

impl ImageStore {
    /// Open (and create if missing) the store at `dir`, with default build options.
    pub fn open(dir: &Path) -> Result<ImageStore> {
        std::fs::create_dir_all(dir).ctx("creating the image store", dir)?;
        Ok(ImageStore {
            dir: dir.to_owned(),
            options: BuildOptions::default(),
        })
    }

    /// Use these build options (mirror, suite, uid base...) for builds from this store.
    pub fn with_options(mut self, options: BuildOptions) -> ImageStore {
        self.options = options;
        self
    }

    /// The build options in use.
    pub fn options(&self) -> &BuildOptions {
        &self.options
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The usable images, by name. Dead builds are cleaned up first (best effort).
    pub fn list(&self) -> Result<Vec<Image>> {
        let _ = self.cleanup();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).ctx("reading", &self.dir)? {
            let entry = entry.ctx("reading", &self.dir)?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if validate_name(&name).is_err() {
                continue;
            }
            if let Ok(image) = self.get(&name) {
                out.push(image);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The image called `name`, or [`Error::NotFound`].
    pub fn get(&self, name: &str) -> Result<Image> {
        validate_name(name)?;
        let dir = self.dir.join(name);
        let path = dir.join(manifest::FILE);
        let rootfs = dir.join("rootfs");
        if !path.is_file() || !rootfs.is_dir() {
            return Err(Error::NotFound {
                name: name.to_owned(),
            });
        }
        let manifest = Manifest::read(&path)?;
        Ok(Image {
            name: name.to_owned(),
            rootfs,
            manifest,
        })
    }

    /// Remove an image: renamed out of sight at once, then deleted. Whether a machine still
    /// uses it is the caller's concern.
    pub fn remove(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        let dir = self.dir.join(name);
        let trash = self
            .dir
            .join(format!("{TRASH_PREFIX}{name}-{}", fsutil::random_suffix()));
        match std::fs::rename(&dir, &trash) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    name: name.to_owned(),
                });
            }
            r => r.ctx("moving aside", &dir)?,
        }
        fsutil::remove_tree(&trash)
    }

    /// Remove what dead builds and interrupted removals left: `.build-*` directories whose
    /// lock no live builder holds, and `.trash-*` directories.
    pub fn cleanup(&self) -> Result<()> {
        for entry in std::fs::read_dir(&self.dir).ctx("reading", &self.dir)? {
            let entry = entry.ctx("reading", &self.dir)?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let path = entry.path();
            if name.starts_with(TRASH_PREFIX) {
                fsutil::remove_tree(&path)?;
            } else if let Some(work) = name.strip_prefix(BUILD_PREFIX) {
                let work = work.strip_suffix(LOCK_SUFFIX).unwrap_or(work);
                let dir = self.dir.join(format!("{BUILD_PREFIX}{work}"));
                let lock_path = self.dir.join(format!("{BUILD_PREFIX}{work}{LOCK_SUFFIX}"));
                if let Some(lock) = Lock::acquire(&lock_path, false)? {
                    fsutil::remove_tree(&dir)?;
                    let _ = std::fs::remove_file(&lock_path);
                    drop(lock);
                }
            }
        }
        Ok(())
    }

    /// Build `recipe` into an image of the same name, replacing an existing one only once the
    /// new one is complete. Builds of one name are serialized.
    pub fn build(&self, recipe: &Recipe, progress: &mut dyn FnMut(Progress)) -> Result<Image> {
        let _name_lock = self.name_lock(&recipe.name)?;
        self.build_locked(recipe, progress)
    }

    /// Hold the lock that serializes builds of `name`.
    pub(crate) fn name_lock(&self, name: &str) -> Result<Lock> {
        validate_name(name)?;
        let path = self.dir.join(format!(".name-{name}{LOCK_SUFFIX}"));
        Lock::acquire(&path, true)?.ok_or_else(|| {
            Error::io(
                "locking",
                &path,
                std::io::Error::from(std::io::ErrorKind::WouldBlock),
            )
        })
    }

    /// [`ImageStore::build`] for a caller that holds the name lock.
    pub(crate) fn build_locked(
        &self,
        recipe: &Recipe,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Image> {
        validate_name(&recipe.name)?;
        let started = Instant::now();
        let report = |progress: &mut dyn FnMut(Progress), phase: Phase, message: String| {
            progress(Progress {
                phase,
                message,
                elapsed: started.elapsed(),
            })
        };
        let _ = self.cleanup();
        let work = WorkDir::create(&self.dir, &recipe.name)?;
        let opts = &self.options;

        let archive = build::resolve_archive(opts, recipe.suite.as_deref(), &mut |uri, alias| {
            report(
                progress,
                Phase::Prepare,
                format!("asking {uri} which release `{alias}` is"),
            );
            build::lookup_alias(uri, alias, &work.dir)
        })?;
        let tool = Tool::find()?;
        let arch = opts.arch.clone().unwrap_or_else(build::host_arch);
        let builder = tool.version();
        report(
            progress,
            Phase::Prepare,
            format!(
                "{builder}: {} {} ({arch})",
                archive.main.uri, archive.main.suite
            ),
        );
        let rootfs = work.dir.join("rootfs");
        let args = build::with_trust(&tool, opts, tool.args(recipe, &archive, &arch, &rootfs));
        build::run_tool(&tool, &args, &opts.env, started, progress)?;

        report(
            progress,
            Phase::Finalize,
            "hostname, directories, apt configuration".into(),
        );
        build::finalize(&rootfs, &archive, recipe.keep_apt_lists)?;
        let versions = contents::key_versions(&contents::installed(&rootfs)?, &recipe.packages);
        contents::add_helpers(&rootfs, &archive.main.suite, &versions)?;

        report(
            progress,
            Phase::Shift,
            format!("owners to {}..", opts.uid_base),
        );
        let stats = shift::shift_tree(&rootfs, opts.uid_base)?;
        report(
            progress,
            Phase::Shift,
            format!(
                "{} entries, {} MiB in {:.2}s",
                stats.entries,
                stats.bytes >> 20,
                stats.elapsed.as_secs_f64()
            ),
        );

        let manifest = Manifest {
            name: recipe.name.clone(),
            recipe: if recipe.recipe.is_empty() {
                recipe.name.clone()
            } else {
                recipe.recipe.clone()
            },
            variant: recipe.variant.clone(),
            packages: recipe.packages.clone(),
            suite: archive.main.suite.clone(),
            mirror: archive.main.uri.clone(),
            arch,
            uid_base: opts.uid_base,
            created: firepit_util::now().max(0) as u64,
            size_bytes: stats.bytes,
            builder,
            builder_version: env!("CARGO_PKG_VERSION").to_owned(),
            versions,
            layers: Vec::new(),
        };
        manifest.write(&work.dir.join(manifest::FILE))?;
        work.commit(&self.dir.join(&recipe.name))?;
        report(
            progress,
            Phase::Done,
            format!("image `{}` ready", recipe.name),
        );
        self.get(&recipe.name)
    }
}

/// An image being made by a caller other than the Debian builder (an OCI pull, import or
/// Dockerfile build): its work directory under the store, with `rootfs/` made, and the lock
/// that serializes makers of its name. Dropped without [`Staged::commit`], it leaves nothing.
pub struct Staged {
    store: ImageStore,
    name: String,
    work: WorkDir,
    _name_lock: Lock,
}

impl Staged {
    /// The work directory: files written here (besides `rootfs/`) go into the image's
    /// directory with it.
    pub fn dir(&self) -> &Path {
        &self.work.dir
    }

    /// The tree being made.
    pub fn rootfs(&self) -> PathBuf {
        self.work.dir.join("rootfs")
    }

    /// The image's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes `manifest` last and moves the image into place (atomically swapped with an
    /// image of the same name).
    pub fn commit(self, manifest: &Manifest) -> Result<Image> {
        manifest.write(&self.work.dir.join(manifest::FILE))?;
        self.work.commit(&self.store.dir.join(&self.name))?;
        self.store.get(&self.name)
    }
}

impl ImageStore {
    /// Starts making the image `name` outside the Debian builder; see [`Staged`].
    pub fn stage(&self, name: &str) -> Result<Staged> {
        let name_lock = self.name_lock(name)?;
        let _ = self.cleanup();
        let work = WorkDir::create(&self.dir, name)?;
        let rootfs = work.dir.join("rootfs");
        std::fs::create_dir(&rootfs).ctx("creating", &rootfs)?;
        Ok(Staged {
            store: self.clone(),
            name: name.to_owned(),
            work,
            _name_lock: name_lock,
        })
    }
}

impl ImageStore {
    /// Makes image `name` from a tree `fill` writes at the path it is given
    /// (which does not exist yet), owned as `base`'s is: an image saved from
    /// a session made from `base`. Like a build, it is made in a `.build-*`
    /// dir with its manifest last and moved into place whole (replacing an
    /// image of that name); a failure leaves nothing.
    pub fn save(
        &self,
        name: &str,
        base: &Image,
        builder: &str,
        fill: impl FnOnce(&Path) -> std::result::Result<(), String>,
    ) -> Result<Image> {
        let _name_lock = self.name_lock(name)?;
        let _ = self.cleanup();
        let work = WorkDir::create(&self.dir, name)?;
        let rootfs = work.dir.join("rootfs");
        fill(&rootfs).map_err(|e| {
            Error::io(
                "writing the image's tree",
                &rootfs,
                std::io::Error::other(e),
            )
        })?;
        let manifest = Manifest {
            name: name.to_owned(),
            created: firepit_util::now().max(0) as u64,
            size_bytes: tree_bytes(&rootfs),
            builder: builder.to_owned(),
            builder_version: env!("CARGO_PKG_VERSION").to_owned(),
            // The saved tree is the whole root: nothing stacked below it.
            layers: Vec::new(),
            ..base.manifest.clone()
        };
        manifest.write(&work.dir.join(manifest::FILE))?;
        work.commit(&self.dir.join(name))?;
        self.get(name)
    }
}

/// Bytes of the files below `root` (links not followed, hard links once);
/// what cannot be read counts nothing.
fn tree_bytes(root: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut dirs = vec![root.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                dirs.push(e.path());
            } else if m.nlink() <= 1 || seen.insert((m.dev(), m.ino())) {
                total = total.saturating_add(m.blocks() * 512);
            }
        }
    }
    total
}

/// A build's work directory and its lock; removed on drop unless committed.
struct WorkDir {
    dir: PathBuf,
    lock_path: PathBuf,
    lock: Option<Lock>,
}

impl WorkDir {
    fn create(store: &Path, name: &str) -> Result<WorkDir> {
        loop {
            let stem = format!("{BUILD_PREFIX}{name}-{}", fsutil::random_suffix());
            let dir = store.join(&stem);
            let lock_path = store.join(format!("{stem}{LOCK_SUFFIX}"));
            let Some(lock) = Lock::acquire(&lock_path, false)? else {
                continue;
            };
            // A cleaner may have unlinked the file between our open and our flock.
            if !lock.is_at(&lock_path) {
                continue;
            }
            std::fs::create_dir(&dir).ctx("creating", &dir)?;
            return Ok(WorkDir {
                dir,
                lock_path,
                lock: Some(lock),
            });
        }
    }

    /// Move the finished tree to `dest`, swapping atomically with an image already there.
    fn commit(mut self, dest: &Path) -> Result<()> {
        use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
        match renameat2(
            AT_FDCWD,
            &self.dir,
            AT_FDCWD,
            dest,
            RenameFlags::RENAME_EXCHANGE,
        ) {
            Ok(()) => {
                // self.dir now holds the old image; it goes with the drop below.
            }
            Err(nix::errno::Errno::ENOENT) => {
                std::fs::rename(&self.dir, dest).ctx("moving into place", dest)?;
            }
            Err(e) => return Err(Error::io("moving into place", dest, e.into())),
        }
        let _ = fsutil::remove_tree(&self.dir);
        let _ = std::fs::remove_file(&self.lock_path);
        self.lock.take();
        Ok(())
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.lock.is_some() {
            let _ = fsutil::remove_tree(&self.dir);
            let _ = std::fs::remove_file(&self.lock_path);
            self.lock.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_image(store: &ImageStore, name: &str) {
        let dir = store.dir().join(name);
        std::fs::create_dir_all(dir.join("rootfs/usr/bin")).unwrap();
        crate::manifest::sample(name)
            .write(&dir.join(manifest::FILE))
            .unwrap();
    }

    #[test]
    fn lists_only_images_with_a_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&tmp.path().join("images")).unwrap();
        fake_image(&store, "b");
        fake_image(&store, "a");
        std::fs::create_dir_all(store.dir().join("nomanifest/rootfs")).unwrap();
        std::fs::create_dir_all(store.dir().join("broken/rootfs")).unwrap();
        std::fs::write(store.dir().join("broken/image.json"), "{").unwrap();
        std::fs::create_dir_all(store.dir().join(".hidden/rootfs")).unwrap();
        let names: Vec<_> = store.list().unwrap().into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["a", "b"]);
        let a = store.get("a").unwrap();
        assert_eq!(a.rootfs, store.dir().join("a/rootfs"));
        assert_eq!(a.manifest.uid_base, 100_000);
        let err = store.get("nomanifest").unwrap_err();
        assert!(err.is_not_found());
        assert!(
            err.to_string().contains("firepit image build nomanifest"),
            "{err}"
        );
        assert!(matches!(store.get("../x"), Err(Error::InvalidName { .. })));
    }

    #[test]
    fn stale_work_dirs_are_removed_unless_locked() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(tmp.path()).unwrap();
        // A dead build: a work dir whose lock nobody holds (kill -9 leaves exactly this).
        let dead = store.dir().join(".build-minimal-dead");
        std::fs::create_dir_all(dead.join("rootfs/etc")).unwrap();
        std::fs::write(store.dir().join(".build-minimal-dead.lock"), "").unwrap();
        // A dead build that lost its lock file, and an orphan lock file.
        std::fs::create_dir_all(store.dir().join(".build-x-nolock/rootfs")).unwrap();
        std::fs::write(store.dir().join(".build-y-orphan.lock"), "").unwrap();
        // A live build.
        let live = WorkDir::create(store.dir(), "minimal").unwrap();
        std::fs::create_dir_all(live.dir.join("rootfs")).unwrap();
        // An interrupted removal.
        std::fs::create_dir_all(store.dir().join(".trash-old-1/rootfs")).unwrap();

        assert!(store.list().unwrap().is_empty());
        let mut left: Vec<_> = std::fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let live_name = live.dir.file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(left, [live_name.clone(), format!("{live_name}.lock")]);
        drop(live);
        store.cleanup().unwrap();
        assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), 0);
    }

    #[test]
    fn commit_replaces_and_remove_removes() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(tmp.path()).unwrap();
        fake_image(&store, "minimal");
        std::fs::write(store.dir().join("minimal/rootfs/old"), "").unwrap();
        let work = WorkDir::create(store.dir(), "minimal").unwrap();
        std::fs::create_dir_all(work.dir.join("rootfs")).unwrap();
        std::fs::write(work.dir.join("rootfs/new"), "").unwrap();
        crate::manifest::sample("minimal")
            .write(&work.dir.join(manifest::FILE))
            .unwrap();
        work.commit(&store.dir().join("minimal")).unwrap();
        let image = store.get("minimal").unwrap();
        assert!(image.rootfs.join("new").exists() && !image.rootfs.join("old").exists());
        assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), 1);

        store.remove("minimal").unwrap();
        assert!(store.get("minimal").unwrap_err().is_not_found());
        assert!(store.remove("minimal").unwrap_err().is_not_found());
        assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), 0);
    }

    #[test]
    fn staged_images_appear_only_when_committed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(tmp.path()).unwrap();
        let staged = store.stage("pulled").unwrap();
        std::fs::write(staged.rootfs().join("f"), "x").unwrap();
        drop(staged);
        assert!(store.get("pulled").unwrap_err().is_not_found());
        assert!(work_dirs_left(&store).is_empty());
        let staged = store.stage("pulled").unwrap();
        std::fs::write(staged.rootfs().join("f"), "x").unwrap();
        std::fs::write(staged.dir().join("extra.json"), "{}").unwrap();
        let image = staged.commit(&crate::manifest::sample("pulled")).unwrap();
        assert!(image.rootfs.join("f").exists());
        assert!(store.dir().join("pulled/extra.json").exists());
        assert!(work_dirs_left(&store).is_empty());
        assert!(store.stage("../bad").is_err());
    }

    fn work_dirs_left(store: &ImageStore) -> Vec<String> {
        std::fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(BUILD_PREFIX))
            .collect()
    }

    #[test]
    fn failed_build_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = BuildOptions {
            apt_dir: tmp.path().join("no-apt"),
            os_release: tmp.path().join("no-os-release"),
            ..BuildOptions::default()
        };
        let store = ImageStore::open(&tmp.path().join("images"))
            .unwrap()
            .with_options(opts);
        let recipe = Recipe::builtin("minimal").unwrap();
        let err = store.build(&recipe, &mut |_| {}).unwrap_err();
        assert!(matches!(err, Error::NoAptSource { .. }), "{err}");
        let left: Vec<_> = std::fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(BUILD_PREFIX))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
