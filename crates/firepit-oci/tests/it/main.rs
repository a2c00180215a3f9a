//! Integration tests of firepit-oci: images made by the test, pushed with skopeo to a real
//! registry (Debian's `docker-registry`) on loopback, pulled and imported as root, and
//! compared with `umoci unpack` of the same images.

mod harness;
mod layers;
mod token;

use std::path::Path;

use firepit_image::ImageStore;
use firepit_oci::{ClientOptions, Credentials, Error, Event, PullOptions, Record};
use harness::{E, Img, Registry};
use serde_json::json;

pub(crate) fn options(insecure: bool, creds: Option<(&str, &str)>) -> PullOptions {
    PullOptions {
        client: ClientOptions {
            insecure,
            credentials: creds.map(|(u, p)| Credentials {
                user: u.into(),
                password: p.into(),
            }),
        },
        default_registry: None,
    }
}

pub(crate) fn pull(
    store: &ImageStore,
    reference: &str,
    name: &str,
    opts: &PullOptions,
) -> Result<firepit_image::Image, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut events = Vec::new();
    let r = rt.block_on(firepit_oci::pull(
        store,
        reference,
        Some(name),
        opts,
        &mut |e| events.push(e),
    ));
    if r.is_ok() {
        // Progress came per layer, and the end was announced.
        assert!(
            matches!(events.first(), Some(Event::Resolved { .. })),
            "{events:?}"
        );
        assert!(
            matches!(events.last(), Some(Event::Done { .. })),
            "{events:?}"
        );
        assert!(events.iter().any(|e| matches!(
            e,
            Event::Unpack { index: 1, .. } | Event::Shared { index: 1, .. }
        )));
    }
    r
}

/// Whether a pull was refused for its credentials, and whether it had some.
pub(crate) fn refused(err: &Error) -> Option<bool> {
    match err {
        Error::Unauthorized {
            had_credentials, ..
        } => Some(*had_credentials),
        _ => None,
    }
}

/// Three layers: a base with modes, owners, links and a merged-/usr style `lib` link; a
/// layer with a whiteout, an opaque dir and writes through the `lib` link; a layer that
/// turns a file into a directory and a directory into a file.
pub(crate) fn layered() -> Vec<Vec<u8>> {
    vec![
        harness::layer(&[
            E::Dir("etc", 0o755, 0),
            E::File("etc/hostname", 0o644, 0, b"base\n"),
            E::File("etc/shadow", 0o640, 0, b"root:*:1::::::\n"),
            E::Dir("usr", 0o755, 0),
            E::Dir("usr/lib", 0o755, 0),
            E::File("usr/lib/libx.so", 0o755, 0, b"\x7fELF lib"),
            E::Symlink("lib", "usr/lib"),
            E::Dir("usr/bin", 0o755, 0),
            E::File("usr/bin/su", 0o4755, 0, b"setuid"),
            E::Hardlink("usr/bin/su-again", "usr/bin/su"),
            E::Dir("home", 0o755, 0),
            E::Dir("home/user", 0o700, 1000),
            E::File("home/user/.profile", 0o600, 1000, b"export A=1\n"),
            E::Dir("data", 0o755, 0),
            E::File("data/old-1", 0o644, 0, b"1"),
            E::File("data/old-2", 0o644, 0, b"2"),
            E::File("gone", 0o644, 0, b"to be removed"),
            E::Dir("gone-dir", 0o755, 0),
            E::File("gone-dir/f", 0o644, 0, b"f"),
            E::File("file-to-dir", 0o644, 0, b"f"),
            E::Dir("dir-to-file", 0o755, 0),
            E::File("dir-to-file/x", 0o644, 0, b"x"),
        ]),
        harness::layer(&[
            E::File(".wh.gone", 0o644, 0, b""),
            E::File(".wh.gone-dir", 0o644, 0, b""),
            E::Dir("data", 0o750, 33),
            E::File("data/.wh..wh..opq", 0o644, 0, b""),
            E::File("data/new", 0o644, 33, b"new"),
            E::File("lib/liby.so", 0o755, 0, b"\x7fELF y"),
            E::File("etc/hostname", 0o644, 0, b"second\n"),
        ]),
        harness::layer(&[
            E::Dir("file-to-dir", 0o755, 0),
            E::File("file-to-dir/inside", 0o644, 0, b"in"),
            E::File("dir-to-file", 0o600, 0, b"now a file"),
            E::Symlink("etc/localtime", "/usr/share/zoneinfo/UTC"),
        ]),
    ]
}

#[test]
fn pull_multi_layer_matches_umoci() {
    if !harness::ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    harness::host_image(
        &layout,
        "v1",
        json!({"Env": ["PATH=/usr/bin", "GREETING=hi"], "WorkingDir": "/data", "User": "1000", "Cmd": ["/usr/bin/su"], "ExposedPorts": {"8080/tcp": {}}}),
        layered(),
    );
    let registry = Registry::start(None);
    registry.push(&layout, "v1", "team/layered");
    let store = ImageStore::open(&tmp.path().join("images")).unwrap();
    let image = pull(
        &store,
        &format!("{}/team/layered:v1", registry.addr),
        "layered",
        &options(true, None),
    )
    .unwrap();

    let view = harness::merged(&image);
    let ours = harness::snapshot(view.path(), 100_000);
    let theirs_root = harness::umoci_unpack(&layout, "v1", &tmp.path().join("bundle"));
    let theirs = harness::snapshot(&theirs_root, 0);
    assert_eq!(ours, theirs);
    // And what the layers meant, spelled out.
    assert!(!ours.contains_key("gone") && !ours.contains_key("gone-dir"));
    assert!(ours.contains_key("data/new") && !ours.contains_key("data/old-1"));
    assert!(ours["data"].ends_with("750 33:33"), "{}", ours["data"]);
    assert!(ours.contains_key("usr/lib/liby.so"));
    assert!(ours["usr/bin/su"].contains("4755 0:0") && ours["usr/bin/su"].contains("nlink=2"));
    assert_eq!(
        std::fs::read(view.join("etc/hostname")).unwrap(),
        b"second\n"
    );

    // The run configuration is in the image for the guest, and in its record.
    let config: firepit_wire::image_config::ImageConfig =
        serde_json::from_slice(&std::fs::read(image.rootfs.join(".firepit/config.json")).unwrap())
            .unwrap();
    assert_eq!(config.cwd.as_deref(), Some("/data"));
    assert_eq!(config.env, ["PATH=/usr/bin", "GREETING=hi"]);
    assert_eq!(config.exposed_ports, ["8080/tcp"]);
    // The guest's mount point is in the image: machines bind on it without a copy-up.
    let guest = std::fs::metadata(image.rootfs.join(".firepit/guest")).unwrap();
    assert!(guest.is_file() && guest.len() == 0, "{guest:?}");
    let record = Record::read(&image).unwrap();
    assert_eq!(record.layers.len(), 3);
    assert_eq!(image.manifest.recipe, "registry");

    // A second pull finds every layer in the content store, and the two images share them.
    let blobs_before = firepit_oci::blobs::BlobStore::open(store.dir())
        .unwrap()
        .list()
        .unwrap();
    let again = pull(
        &store,
        &format!("{}/team/layered:v1", registry.addr),
        "layered-again",
        &options(true, None),
    )
    .unwrap();
    // Its layers are the first one's directories: nothing was unpacked again.
    let again_view = harness::merged(&again);
    assert_eq!(harness::snapshot(again_view.path(), 100_000), ours);
    assert_eq!(again.lowers()[1..], image.lowers()[1..]);
    assert_eq!(again.lowers().len(), 4);
    drop((view, again_view));
    let blobs_after = firepit_oci::blobs::BlobStore::open(store.dir())
        .unwrap()
        .list()
        .unwrap();
    assert_eq!(blobs_before, blobs_after);

    // Removing one image keeps the shared blobs; removing both frees them.
    store.remove("layered").unwrap();
    let blobs = firepit_oci::blobs::BlobStore::open(store.dir()).unwrap();
    assert_eq!(
        firepit_oci::install::collect_garbage(&store, &blobs).unwrap(),
        0
    );
    store.remove("layered-again").unwrap();
    assert!(firepit_oci::install::collect_garbage(&store, &blobs).unwrap() > 0);
    assert!(blobs.list().unwrap().is_empty());
}

#[test]
fn manifest_list_resolves_to_the_hosts_platform() {
    if !harness::ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let host = firepit_oci::spec::host_platform().0;
    let other = if host == "amd64" { "arm64" } else { "amd64" };
    harness::write_layout(
        &layout,
        "multi",
        &[
            Img {
                arch: other,
                config: json!({}),
                layers: vec![harness::layer(&[E::File("which", 0o644, 0, b"other")])],
            },
            Img {
                arch: host,
                config: json!({}),
                layers: vec![harness::layer(&[E::File("which", 0o644, 0, b"host")])],
            },
        ],
    );
    let registry = Registry::start(None);
    registry.push(&layout, "multi", "multi");
    let store = ImageStore::open(&tmp.path().join("images")).unwrap();
    let image = pull(
        &store,
        &format!("{}/multi:multi", registry.addr),
        "multi",
        &options(true, None),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(harness::merged(&image).join("which")).unwrap(),
        b"host"
    );
}

#[test]
fn basic_auth_registry() {
    if !harness::ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    harness::host_image(
        &layout,
        "v1",
        json!({}),
        vec![harness::layer(&[E::File("secret", 0o600, 0, b"s")])],
    );
    let registry = Registry::start(Some(("alice", "s3cret")));
    registry.push(&layout, "v1", "private/app");
    let store = ImageStore::open(&tmp.path().join("images")).unwrap();
    let reference = format!("{}/private/app:v1", registry.addr);
    let err = pull(&store, &reference, "app", &options(true, None)).unwrap_err();
    assert_eq!(refused(&err), Some(false), "{err}");
    let err = pull(
        &store,
        &reference,
        "app",
        &options(true, Some(("alice", "wrong"))),
    )
    .unwrap_err();
    assert_eq!(refused(&err), Some(true), "{err}");
    assert!(store.get("app").is_err());
    let image = pull(
        &store,
        &reference,
        "app",
        &options(true, Some(("alice", "s3cret"))),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(harness::merged(&image).join("secret")).unwrap(),
        b"s"
    );
}

/// Layers that try to leave the root or write through links are refused, nothing outside
/// the image changes, and no image is left behind.
#[test]
fn hostile_layers_are_refused() {
    if !harness::ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("keep"), "host").unwrap();
    let outside_text: &'static str = Box::leak(outside.display().to_string().into_boxed_str());
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "dotdot",
            vec![harness::layer(&[E::RawFile(b"../../escape", b"x")])],
        ),
        (
            "through-link",
            vec![
                harness::layer(&[E::Symlink("evil", outside_text)]),
                harness::layer(&[E::File("evil/keep", 0o644, 0, b"overwritten")]),
            ],
        ),
        (
            "link-to-host-file",
            vec![harness::layer(&[E::Hardlink(
                "steal",
                "../../../../etc/shadow",
            )])],
        ),
        (
            "dangling-link-parent",
            vec![harness::layer(&[
                E::RawSymlink(b"up", b"../../../.."),
                E::RawFile(b"up/tmp/pwned", b"x"),
            ])],
        ),
        (
            "big-id",
            vec![harness::layer(&[E::File("f", 0o644, 70_000, b"x")])],
        ),
    ];
    let store = ImageStore::open(&tmp.path().join("images")).unwrap();
    for (name, layers) in cases {
        let layout = tmp.path().join(format!("layout-{name}"));
        harness::host_image(&layout, "v1", json!({}), layers);
        let archive = tmp.path().join(format!("{name}.tar"));
        harness::tar_dir(&layout, &archive);
        let result = firepit_oci::archive::import(&store, &archive, Some(name), &mut |_| {});
        match (name, result) {
            // A link met on the way is followed as the machine would, inside the root: the
            // write lands in the image.
            ("dangling-link-parent", Ok(image)) => {
                assert!(harness::merged(&image).join("tmp/pwned").exists());
                assert!(!Path::new("/tmp/pwned").exists());
            }
            (_, Ok(_)) => panic!("{name}: a hostile layer was accepted"),
            (_, Err(e)) => {
                assert!(matches!(e, Error::BadLayer { .. }), "{name}: {e}");
                assert!(store.get(name).is_err(), "{name} left an image");
            }
        }
        assert_eq!(
            std::fs::read(outside.join("keep")).unwrap(),
            b"host",
            "{name}"
        );
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1, "{name}");
        assert!(!Path::new("/escape").exists() && !tmp.path().join("escape").exists());
    }
    let leftovers: Vec<_> = std::fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".build-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn import_oci_archive_and_docker_save() {
    if !harness::ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    harness::host_image(&layout, "v2", json!({"Env": ["X=1"]}), layered());
    let store = ImageStore::open(&tmp.path().join("images")).unwrap();
    let archive = tmp.path().join("app.tar");
    harness::tar_dir(&layout, &archive);
    let image = firepit_oci::archive::import(&store, &archive, None, &mut |_| {}).unwrap();
    assert_eq!(image.name, "v2");
    let theirs = harness::umoci_unpack(&layout, "v2", &tmp.path().join("bundle"));
    assert_eq!(
        harness::snapshot(harness::merged(&image).path(), 100_000),
        harness::snapshot(&theirs, 0)
    );

    // docker save's layout, made from the same image by skopeo.
    let saved = tmp.path().join("saved.tar");
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:v2", layout.display()))
        .arg(format!("docker-archive:{}:team/app:v2", saved.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let image = firepit_oci::archive::import(&store, &saved, None, &mut |_| {}).unwrap();
    assert_eq!(image.name, "app-v2");
    assert_eq!(
        harness::snapshot(harness::merged(&image).path(), 100_000),
        harness::snapshot(&theirs, 0)
    );
    assert_eq!(Record::read(&image).unwrap().run.env, ["X=1"]);

    // Not an archive at all.
    let junk = tmp.path().join("junk.tar");
    std::fs::write(&junk, b"not a tar").unwrap();
    assert!(firepit_oci::archive::import(&store, &junk, Some("junk"), &mut |_| {}).is_err());
}
