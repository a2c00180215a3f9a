//! The tests' tools: OCI layouts written by the test (tar layers built entry by entry, hostile
//! ones included), a real registry (Debian's `docker-registry`) on a loopback port, `skopeo`
//! to push layouts to it and `umoci` to unpack them for comparison.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use firepit_oci::testkit::Registry;
use std::process::{Command, Stdio};

use firepit_oci::digest::Digest;
use serde_json::json;

/// Whether the privileged tests can run; they need root and the Debian tools.
pub fn ready() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: unpacking images needs root");
        return false;
    }
    for tool in ["docker-registry", "skopeo", "umoci"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "{tool} is missing: apt-get install docker-registry skopeo umoci busybox-static (cargo xtask test installs them)"
        );
    }
    true
}

/// One entry of a layer.
#[derive(Clone)]
pub enum E {
    Dir(&'static str, u32, u64),
    File(&'static str, u32, u64, &'static [u8]),
    Symlink(&'static str, &'static str),
    Hardlink(&'static str, &'static str),
    /// A path written into the header as is (no checks by the tar writer).
    RawFile(&'static [u8], &'static [u8]),
    RawSymlink(&'static [u8], &'static [u8]),
}

/// An uncompressed layer tar.
pub fn layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            E::Dir(p, mode, id) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_uid(*id);
                h.set_gid(*id);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::File(p, mode, id, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_uid(*id);
                h.set_gid(*id);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).unwrap();
            }
            E::Symlink(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
            E::Hardlink(p, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
            E::RawFile(p, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                h.as_old_mut().name[..p.len()].copy_from_slice(p);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            E::RawSymlink(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                h.as_old_mut().name[..p.len()].copy_from_slice(p);
                h.as_old_mut().linkname[..target.len()].copy_from_slice(target);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn put_blob(layout: &Path, bytes: &[u8]) -> (Digest, u64) {
    let d = Digest::of(bytes);
    std::fs::write(layout.join("blobs/sha256").join(d.hex()), bytes).unwrap();
    (d, bytes.len() as u64)
}

/// An image to write: its architecture, run configuration and layers (uncompressed tars).
pub struct Img {
    pub arch: &'static str,
    pub config: serde_json::Value,
    pub layers: Vec<Vec<u8>>,
}

/// Writes one image's config, layers (gzip) and manifest into `layout`; returns the
/// manifest's descriptor.
fn write_image(layout: &Path, img: &Img) -> serde_json::Value {
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in &img.layers {
        diff_ids.push(Digest::of(l).to_string());
        let (d, size) = put_blob(layout, &gzip(l));
        layer_descs.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d.to_string(), "size": size,
        }));
    }
    let config = json!({
        "architecture": img.arch, "os": "linux",
        "config": img.config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (cd, csize) = put_blob(layout, &serde_json::to_vec(&config).unwrap());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": csize},
        "layers": layer_descs,
    });
    let (md, msize) = put_blob(layout, &serde_json::to_vec(&manifest).unwrap());
    json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": md.to_string(), "size": msize,
        "platform": {"architecture": img.arch, "os": "linux"},
    })
}

/// Writes an OCI layout at `layout` with `tag` naming `images[0]`, or, with several images,
/// an index of them (a manifest list).
pub fn write_layout(layout: &Path, tag: &str, images: &[Img]) {
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut descs: Vec<_> = images.iter().map(|i| write_image(layout, i)).collect();
    let top = if descs.len() == 1 {
        descs.pop().unwrap()
    } else {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": descs,
        });
        let (d, size) = put_blob(layout, &serde_json::to_vec(&index).unwrap());
        json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d.to_string(), "size": size})
    };
    let mut top = top;
    top["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    let index = json!({"schemaVersion": 2, "manifests": [top]});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

/// An OCI layout at `layout` of one image for this host, `tag` naming it.
pub fn host_image(layout: &Path, tag: &str, config: serde_json::Value, layers: Vec<Vec<u8>>) {
    let arch = firepit_oci::spec::host_platform().0;
    write_layout(
        layout,
        tag,
        &[Img {
            arch,
            config,
            layers,
        }],
    );
}

/// A tar of the directory `dir` (an OCI archive when `dir` is a layout).
pub fn tar_dir(dir: &Path, out: &Path) {
    let status = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
}

/// `umoci unpack` of `layout:tag` into `bundle`; returns its rootfs.
pub fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
    let out = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci unpack: {out:?}");
    bundle.join("rootfs")
}

/// What a tree holds, path by path: type, mode, owner (less `uid_base`), content or link
/// target, link count of files, mtime of files.
pub fn snapshot(root: &Path, uid_base: u32) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, uid_base, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, uid_base: u32, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        if rel == ".firepit" {
            continue;
        }
        let m = std::fs::symlink_metadata(&path).unwrap();
        let ft = m.file_type();
        let owner = format!("{}:{}", m.uid() - uid_base, m.gid() - uid_base);
        let mode = m.mode() & 0o7777;
        let what = if ft.is_dir() {
            walk(root, &path, uid_base, out);
            "dir".to_owned()
        } else if ft.is_symlink() {
            format!("-> {}", std::fs::read_link(&path).unwrap().display())
        } else if ft.is_file() {
            let data = std::fs::read(&path).unwrap();
            format!(
                "file {} nlink={} mtime={}",
                Digest::of(&data).short(),
                m.nlink(),
                m.mtime()
            )
        } else {
            "other".to_owned()
        };
        let mode = if ft.is_symlink() { 0 } else { mode };
        out.insert(rel, format!("{what} {mode:o} {owner}"));
    }
}

/// The merged view of an image's stack (its own tree over its layers), as a machine's
/// overlay shows it: mounted read-only at a fresh dir, unmounted when dropped.
pub struct Merged {
    dir: PathBuf,
    mounted: bool,
    _tmp: tempfile::TempDir,
}

impl Merged {
    /// The merged root.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A file of the merged root.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
}

impl Drop for Merged {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Mounts the merged view of `image`; see [`Merged`].
pub fn merged(image: &firepit_image::Image) -> Merged {
    let lowers = image.lowers();
    let tmp = tempfile::tempdir().unwrap();
    if lowers.len() == 1 {
        return Merged {
            dir: lowers[0].clone(),
            mounted: false,
            _tmp: tmp,
        };
    }
    let dir = tmp.path().join("merged");
    std::fs::create_dir(&dir).unwrap();
    let list: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    let out = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!("ro,lowerdir={}", list.join(":")))
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "mounting the merged view: {out:?}");
    Merged {
        dir,
        mounted: true,
        _tmp: tmp,
    }
}
