//! Integration tests: real builds with mmdebstrap, as root. Skipped (with a note) where not
//! root or no builder is installed. Set `FIREPIT_IMAGE_CACHE` to a directory outside the
//! repository to reuse the `minimal` image between runs.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use firepit_image::{BuildOptions, Error, ImageStore, Phase, Recipe, cache};

const CHILD_ENV: &str = "FIREPIT_IMAGE_IT_CHILD_STORE";

fn can_build() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: building images needs root");
        return false;
    }
    let found = ["/usr/bin/mmdebstrap", "/usr/sbin/debootstrap"]
        .iter()
        .any(|p| Path::new(p).exists());
    if !found {
        eprintln!("skipped: neither mmdebstrap nor debootstrap is installed");
    }
    found
}

fn work_dirs(store: &ImageStore) -> Vec<String> {
    std::fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".build-") || n.starts_with(".trash-"))
        .collect()
}

#[test]
fn build_minimal() {
    if !can_build() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = match cache::store_from_env().unwrap() {
        Some(store) => store,
        None => ImageStore::open(&tmp.path().join("images")).unwrap(),
    };
    let recipe = Recipe::builtin("minimal").unwrap();
    let mut phases = Vec::new();
    let started = Instant::now();
    let image = cache::ensure(&store, &recipe, &mut |p| {
        eprintln!("{p}");
        phases.push(p.phase);
    })
    .unwrap();
    eprintln!("minimal: ready in {:.1}s", started.elapsed().as_secs_f64());
    if !phases.is_empty() {
        for want in [
            Phase::Prepare,
            Phase::Download,
            Phase::Install,
            Phase::Shift,
            Phase::Done,
        ] {
            assert!(phases.contains(&want), "no {want:?} in {phases:?}");
        }
    }

    let m = &image.manifest;
    assert_eq!(
        (m.name.as_str(), m.recipe.as_str(), m.uid_base),
        ("minimal", "minimal", 100_000)
    );
    assert!(m.size_bytes > 10 << 20, "{}", m.size_bytes);
    assert!(m.builder.contains("strap"), "{}", m.builder);
    assert_eq!(
        store
            .list()
            .unwrap()
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>(),
        ["minimal"]
    );

    let root = &image.rootfs;
    let meta = |rel: &str| std::fs::symlink_metadata(root.join(rel)).unwrap();
    assert!(root.join("usr/bin/python3").exists());
    for rel in [
        "",
        "usr/bin/python3",
        "usr/bin/bash",
        "etc/passwd",
        "workspace",
        "root",
        "tmp",
    ] {
        let m = meta(rel);
        assert_eq!((m.uid(), m.gid()), (100_000, 100_000), "{rel}");
    }
    // A setuid-root binary stays setuid after the shift.
    assert_eq!(meta("usr/bin/passwd").permissions().mode() & 0o7777, 0o4755);
    assert_eq!(meta("tmp").permissions().mode() & 0o7777, 0o1777);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "firepit\n"
    );
    let apt = std::fs::read_to_string(root.join("etc/apt/apt.conf.d/99firepit")).unwrap();
    assert!(apt.contains("APT::Sandbox::User \"root\";"));
    let sources =
        std::fs::read_to_string(root.join("etc/apt/sources.list.d/debian.sources")).unwrap();
    assert!(
        sources.contains(&format!("Suites: {}\n", m.suite)),
        "{sources}"
    );
    let debs = std::fs::read_dir(root.join("var/cache/apt/archives"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".deb")
        })
        .count();
    assert_eq!(debs, 0);
    assert!(work_dirs(&store).is_empty());
}

#[test]
fn failing_mirror_leaves_no_image() {
    if !can_build() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Port 9 (discard) on loopback: nothing listens, so apt fails at once.
    let opts = BuildOptions {
        mirror: Some("http://127.0.0.1:9/debian".into()),
        ..Default::default()
    };
    let store = ImageStore::open(tmp.path()).unwrap().with_options(opts);
    let recipe = Recipe::custom("broken", &["bash"]).unwrap();
    let err = store.build(&recipe, &mut |p| eprintln!("{p}")).unwrap_err();
    assert!(matches!(err, Error::BuilderFailed { .. }), "{err}");
    eprintln!("{err}");
    assert!(store.list().unwrap().is_empty());
    assert!(store.get("broken").unwrap_err().is_not_found());
    assert!(work_dirs(&store).is_empty(), "{:?}", work_dirs(&store));
}

/// Not a test by itself: the child process of `killed_build_leaves_no_image`.
#[test]
fn child_build() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = ImageStore::open(Path::new(&dir)).unwrap();
    let recipe = Recipe::custom("killed", &["bash", "python3"]).unwrap();
    if let Err(e) = store.build(&recipe, &mut |p| eprintln!("child: {p}")) {
        eprintln!("child: {e}");
    }
}

#[test]
fn killed_build_leaves_no_image() {
    if !can_build() || std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_build", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, tmp.path())
        .spawn()
        .unwrap();

    // Wait until packages are being unpacked into the work dir, then kill -9 the builder.
    let deadline = Instant::now() + Duration::from_secs(120);
    let midway = loop {
        let extracting = work_dirs(&store)
            .iter()
            .any(|d| tmp.path().join(d).join("rootfs/usr/bin").exists());
        if extracting {
            break true;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(midway, "the child build never got going");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    assert!(
        !work_dirs(&store).is_empty(),
        "the dead build's work dir should be there until cleanup"
    );

    // The builder's process tree dies with it; then a list removes its remains.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let images = store.list().unwrap();
        assert!(images.is_empty(), "{images:?}");
        if work_dirs(&store).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: {:?}",
            work_dirs(&store)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(store.get("killed").unwrap_err().is_not_found());
    // No builder process survives.
    let needle = tmp.path().to_str().unwrap().as_bytes().to_vec();
    let survivors: Vec<_> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle.as_slice()))
        })
        .map(|e| e.file_name())
        .collect();
    assert!(
        survivors.is_empty(),
        "builder processes left: {survivors:?}"
    );
}
