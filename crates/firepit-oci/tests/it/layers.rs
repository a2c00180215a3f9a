//! Layers stacked as overlay lower dirs: shared on disk by the images made of them,
//! whiteouts and opaque dirs as overlayfs wants them, deep stacks flattened, zstd layers,
//! and Dockerfile builds that stack on a pulled image's layers.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

use firepit_image::ImageStore;
use firepit_oci::Record;
use firepit_oci::layers::FLATTEN_AT;
use serde_json::json;

use crate::harness::{self, E, Registry};
use crate::{layered, options, pull};

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn opaque(dir: &std::path::Path) -> bool {
    let out = std::process::Command::new("getfattr")
        .args([
            "--absolute-names",
            "--only-values",
            "-n",
            "trusted.overlay.opaque",
        ])
        .arg(dir)
        .output();
    match out {
        Ok(o) => o.status.success() && o.stdout == b"y",
        // Without getfattr, ask the kernel directly.
        Err(_) => xattr_y(dir),
    }
}

fn xattr_y(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    let mut v = [0u8; 1];
    // SAFETY: valid C strings and a buffer of the length passed.
    let n = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            v.as_mut_ptr().cast(),
            1,
        )
    };
    n == 1 && v[0] == b'y'
}

/// Two images with the same first layers share their unpacked directories (the same
/// inodes), each layer once on disk; a whiteout is an overlayfs whiteout in its layer's dir,
/// an opaque marker the overlay attribute; the machine's view hides what they hide.
#[test]
fn images_share_layer_dirs_and_whiteouts_hide_lower_files() {
    if !harness::ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(None);
    let a = tmp.path().join("a");
    harness::host_image(&a, "v1", json!({}), layered());
    registry.push(&a, "v1", "a");
    let b = tmp.path().join("b");
    let mut other = layered();
    other.truncate(2);
    other.push(harness::layer(&[
        E::File("etc/b-only", 0o644, 0, b"b"),
        E::File("usr/lib/.wh.libx.so", 0o644, 0, b""),
    ]));
    harness::host_image(&b, "v1", json!({}), other);
    registry.push(&b, "v1", "b");
    let store = ImageStore::open(&tmp.path().join("images")).unwrap();
    let ia = pull(
        &store,
        &format!("{}/a:v1", registry.addr),
        "a",
        &options(true, None),
    )
    .unwrap();
    let mut events = Vec::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ib = rt
        .block_on(firepit_oci::pull(
            &store,
            &format!("{}/b:v1", registry.addr),
            Some("b"),
            &options(true, None),
            &mut |e| events.push(e),
        ))
        .unwrap();
    let (la, lb) = (ia.lowers(), ib.lowers());
    assert_eq!(la.len(), 4, "{la:?}");
    // Topmost first: the images' own trees, their third layers, then the two they share.
    assert_eq!(la[2..], lb[2..]);
    assert_ne!(la[1], lb[1]);
    assert!(
        events
            .iter()
            .filter(|e| matches!(e, firepit_oci::Event::Shared { .. }))
            .count()
            == 2,
        "{events:?}"
    );
    let ino = |p: PathBuf| std::fs::metadata(p).unwrap().ino();
    assert_eq!(ino(la[3].join("usr/bin/su")), ino(lb[3].join("usr/bin/su")));
    // Each shared layer is counted once: the second image's record names the same dirs.
    let (ra, rb) = (Record::read(&ia).unwrap(), Record::read(&ib).unwrap());
    assert_eq!(ra.stack[1..], rb.stack[1..]);

    // The second layer's whiteouts, as overlayfs reads them in a lower dir.
    let gone = std::fs::symlink_metadata(la[2].join("gone")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    assert!(opaque(&la[2].join("data")));
    assert!(!la[2].join(".wh.gone").exists());
    // The machine's view: the whited-out files are gone in both images, the third layer's
    // own whiteout only in b.
    let va = harness::merged(&ia);
    let vb = harness::merged(&ib);
    for v in [&va, &vb] {
        assert!(!v.join("gone").exists() && !v.join("gone-dir").exists());
        assert!(!v.join("data/old-1").exists() && v.join("data/new").exists());
        assert_eq!(std::fs::read(v.join("etc/hostname")).unwrap(), b"second\n");
    }
    assert!(va.join("usr/lib/libx.so").exists());
    assert!(!vb.join("usr/lib/libx.so").exists());
    assert!(vb.join("usr/lib/liby.so").exists() && vb.join("etc/b-only").exists());
    drop((va, vb));

    // Removing one image keeps the layers the other uses; removing both frees them all.
    let blobs = firepit_oci::blobs::BlobStore::open(store.dir()).unwrap();
    store.remove("a").unwrap();
    firepit_oci::install::collect_garbage(&store, &blobs).unwrap();
    assert!(!la[1].exists() && la[2].exists() && la[3].exists());
    store.remove("b").unwrap();
    firepit_oci::install::collect_garbage(&store, &blobs).unwrap();
    let left: Vec<_> = std::fs::read_dir(la[3].parent().unwrap())
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// An image of more layers than a machine stacks has its oldest flattened into one tree;
/// what the machine sees is what `umoci unpack` makes.
#[test]
fn deep_stacks_flatten_the_oldest_layers() {
    if !harness::ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let n = FLATTEN_AT + 8;
    let mut layers = vec![harness::layer(&[E::Dir("d", 0o755, 0)])];
    for i in 1..n {
        let mut entries = vec![E::File(leak(format!("d/f{i}")), 0o644, 0, b"x")];
        if i % 3 == 0 {
            // Each third layer removes the file the layer before it added.
            entries.push(E::File(leak(format!("d/.wh.f{}", i - 1)), 0o644, 0, b""));
        }
        layers.push(harness::layer(&entries));
    }
    let layout = tmp.path().join("deep");
    harness::host_image(&layout, "v1", json!({}), layers);
    let registry = Registry::start(None);
    registry.push(&layout, "v1", "deep");
    let store = ImageStore::open(&tmp.path().join("images")).unwrap();
    let image = pull(
        &store,
        &format!("{}/deep:v1", registry.addr),
        "deep",
        &options(true, None),
    )
    .unwrap();
    let lowers = image.lowers();
    assert_eq!(lowers.len(), FLATTEN_AT + 1, "{lowers:?}");
    let bottom = lowers.last().unwrap();
    assert!(
        bottom
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("f-"),
        "{bottom:?}"
    );
    let view = harness::merged(&image);
    let theirs = harness::umoci_unpack(&layout, "v1", &tmp.path().join("bundle"));
    assert_eq!(
        harness::snapshot(view.path(), 100_000),
        harness::snapshot(&theirs, 0)
    );
    assert!(!view.join("d/f2").exists() && view.join("d/f3").exists());
}

/// zstd-compressed layers (pushed by skopeo recompressing) unpack like gzip ones.
#[test]
fn zstd_layers() {
    if !harness::ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("z");
    harness::host_image(&layout, "v1", json!({}), layered());
    let registry = Registry::start(None);
    registry.push_with(
        &layout,
        "v1",
        "z",
        &["--dest-compress-format=zstd", "--dest-compress"],
    );
    let store = ImageStore::open(&tmp.path().join("images")).unwrap();
    let image = pull(
        &store,
        &format!("{}/z:v1", registry.addr),
        "z",
        &options(true, None),
    )
    .unwrap();
    let record = Record::read(&image).unwrap();
    let blobs = firepit_oci::blobs::BlobStore::open(store.dir()).unwrap();
    let manifest = String::from_utf8(blobs.read(&record.manifest, 1 << 20).unwrap()).unwrap();
    assert!(manifest.contains("tar+zstd"), "{manifest}");
    let first = std::fs::read(blobs.path(&record.layers[0])).unwrap();
    assert!(first.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]), "not zstd");
    let view = harness::merged(&image);
    let theirs = harness::umoci_unpack(&layout, "v1", &tmp.path().join("bundle"));
    assert_eq!(
        harness::snapshot(view.path(), 100_000),
        harness::snapshot(&theirs, 0)
    );
}

struct NoRun;

impl firepit_oci::build::Runner for NoRun {
    fn run(
        &mut self,
        _: &[PathBuf],
        _: u32,
        _: &[String],
        _: &[(String, String)],
        _: &str,
        _: &mut std::fs::File,
    ) -> Result<(), String> {
        Err("no RUN in this test".into())
    }
}

/// A Dockerfile build on a pulled image stacks its steps' layers on the image's: the base
/// image's layer dirs are the built image's lowest; a WORKDIR that exists makes nothing,
/// through a link of the base it lands where the link leads.
#[test]
fn builds_stack_on_the_base_images_layers() {
    if !harness::ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("base");
    harness::host_image(&layout, "v1", json!({"WorkingDir": "/data"}), layered());
    let registry = Registry::start(None);
    registry.push(&layout, "v1", "base");
    let store = ImageStore::open(&tmp.path().join("images")).unwrap();
    let base = pull(
        &store,
        &format!("{}/base:v1", registry.addr),
        "base",
        &options(true, None),
    )
    .unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello"), "hi\n").unwrap();
    let text = "FROM base\nWORKDIR /lib/sub\nCOPY hello ./\nWORKDIR /home/user\n";
    let dockerfile = ctx.join("Dockerfile");
    let built = firepit_oci::build::build(
        &store,
        text,
        &firepit_oci::build::BuildRequest {
            name: "built",
            dockerfile: &dockerfile,
            context: &ctx,
            build_args: Default::default(),
            target: None,
        },
        &mut NoRun,
        &mut |_| {},
    )
    .unwrap();
    let (lb, lt) = (base.lowers(), built.lowers());
    assert_eq!(lt.len(), lb.len() + 3, "{lt:?}");
    assert_eq!(lt[lt.len() - 3..], lb[1..]);
    let view = harness::merged(&built);
    assert_eq!(
        std::fs::read(view.join("usr/lib/sub/hello")).unwrap(),
        b"hi\n"
    );
    assert!(
        std::fs::symlink_metadata(view.join("lib"))
            .unwrap()
            .is_symlink()
    );
    // The existing /home/user kept its owner and mode.
    let home = std::fs::metadata(view.join("home/user")).unwrap();
    assert_eq!((home.uid(), home.mode() & 0o7777), (100_000 + 1000, 0o700));
    assert!(view.join("home/user/.profile").exists());
}

/// A multi-stage Dockerfile: `COPY --from` a stage by name and by index and from an image
/// of the store; only the stages the target needs are built (a stage on a missing image
/// that nothing needs is never looked at); `--target` makes an image of an earlier stage.
#[test]
fn multi_stage_builds_copy_from_stages_and_images() {
    if !harness::ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("base");
    harness::host_image(&layout, "v1", json!({}), layered());
    let registry = Registry::start(None);
    registry.push(&layout, "v1", "base");
    let store = ImageStore::open(&tmp.path().join("images")).unwrap();
    pull(
        &store,
        &format!("{}/base:v1", registry.addr),
        "base",
        &options(true, None),
    )
    .unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(ctx.join("src/deep")).unwrap();
    std::fs::write(ctx.join("src/a.txt"), "a\n").unwrap();
    std::fs::write(ctx.join("src/deep/b.txt"), "b\n").unwrap();
    std::os::unix::fs::symlink("a.txt", ctx.join("src/link")).unwrap();
    let text = "\
FROM base AS Build
WORKDIR /out
COPY src/ ./
ENV STAGE=build

FROM missing-image AS unused
COPY src/a.txt /a

FROM base
COPY --from=build /out /app
COPY --from=0 /out/deep/b.txt /single
COPY --from=base /etc/hostname /from-image
COPY --from=build /lib/liby.so /via-link/
";
    let dockerfile = ctx.join("Dockerfile");
    let build = |name: &str, target: Option<&str>, text: &str| {
        let mut events = Vec::new();
        let r = firepit_oci::build::build(
            &store,
            text,
            &firepit_oci::build::BuildRequest {
                name,
                dockerfile: &dockerfile,
                context: &ctx,
                build_args: Default::default(),
                target,
            },
            &mut NoRun,
            &mut |e| events.push(e),
        );
        (r, events)
    };
    let (image, events) = build("multi", None, text);
    let image = image.unwrap();
    // The unused stage's lines never started.
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, firepit_oci::build::StepEvent::Start { line: 6 | 7, .. })),
        "{events:?}"
    );
    let view = harness::merged(&image);
    assert_eq!(std::fs::read(view.join("app/a.txt")).unwrap(), b"a\n");
    assert_eq!(std::fs::read(view.join("app/deep/b.txt")).unwrap(), b"b\n");
    assert_eq!(
        std::fs::read_link(view.join("app/link")).unwrap(),
        PathBuf::from("a.txt")
    );
    assert_eq!(std::fs::read(view.join("single")).unwrap(), b"b\n");
    assert_eq!(std::fs::read(view.join("from-image")).unwrap(), b"second\n");
    assert_eq!(
        std::fs::read(view.join("via-link/liby.so")).unwrap(),
        b"\x7fELF y"
    );
    // The final stage has the base's config, not the build stage's ENV.
    let record = Record::read(&image).unwrap();
    assert!(!record.run.env.iter().any(|e| e.starts_with("STAGE=")));
    drop(view);

    // --target: the image of the build stage.
    let (image, _) = build("stage", Some("build"), text);
    let image = image.unwrap();
    let record = Record::read(&image).unwrap();
    assert!(record.run.env.iter().any(|e| e == "STAGE=build"));
    assert!(harness::merged(&image).join("out/a.txt").exists());
    // A target that is not there, a COPY --from of nothing known: clear errors with lines.
    let (r, _) = build("x", Some("nope"), text);
    assert!(r.unwrap_err().to_string().contains("nope"));
    let (r, _) = build("x", None, "FROM base\nCOPY --from=ghost /a /b\n");
    let err = r.unwrap_err().to_string();
    assert!(err.contains("line 2") && err.contains("ghost"), "{err}");
    let (r, _) = build(
        "x",
        None,
        "FROM base AS b\nFROM base\nCOPY --from=b /nothing /b\n",
    );
    let err = r.unwrap_err().to_string();
    assert!(err.contains("line 3") && err.contains("/nothing"), "{err}");
    assert!(store.get("x").is_err());
}
