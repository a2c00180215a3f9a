//! Each machine's own uid range: its init's maps, its files' owners on the
//! host, the image left as it was, and machines made before ranges were per
//! machine.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use firepit_machine::namespaces::uid_ranges::DEFAULT_REGISTRY;
use firepit_machine::{Backend, Error, MachineState, Network};

use crate::harness::{Machine, STATE_DIR, backend, rootfs, shared, spec, uid_base};

const COUNT: u32 = 65536;

fn dir(id: &str) -> PathBuf {
    Path::new(STATE_DIR).join(id)
}

/// The machine's base as its init's uid map and gid map show it.
pub(crate) fn mapped_base(pid: u32) -> u32 {
    let mut bases = Vec::new();
    for file in ["uid_map", "gid_map"] {
        let map = fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap();
        let fields: Vec<u32> = map.split_whitespace().map(|f| f.parse().unwrap()).collect();
        assert_eq!(fields.len(), 3, "one line in {file}: {map}");
        assert_eq!((fields[0], fields[2]), (0, COUNT), "{file}: {map}");
        bases.push(fields[1]);
    }
    assert_eq!(bases[0], bases[1], "uid and gid bases");
    bases[0]
}

/// The base a machine has recorded.
fn recorded(id: &str) -> u32 {
    let text = fs::read_to_string(dir(id).join("ids.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["uid_base"].as_u64().unwrap() as u32
}

fn owner(path: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.uid(), m.gid())
}

fn in_range(id: u32, base: u32) -> bool {
    (base..base + COUNT).contains(&id)
}

#[test]
fn machines_have_ranges_of_their_own_and_leave_the_image_alone() {
    let _g = shared();
    let image = rootfs();
    let image_passwd = fs::read(image.join("etc/passwd")).unwrap();
    let image_shadow_owner = owner(&image.join("etc/shadow"));
    let a = Machine::create(spec("it-range-a", Network::None));
    let b = Machine::create(spec("it-range-b", Network::None));
    let (base_a, base_b) = (mapped_base(a.pid), mapped_base(b.pid));
    assert_ne!(base_a, base_b);
    for base in [base_a, base_b] {
        assert!(base >= 1 << 30, "{base}");
        assert!(!in_range(base, uid_base()) && !in_range(uid_base(), base));
        assert!(base_a.abs_diff(base_b) >= COUNT, "{base_a} {base_b}");
    }
    assert_eq!(recorded("it-range-a"), base_a);
    // The registry names the machine's dir under its base.
    let entry = Path::new(DEFAULT_REGISTRY).join(base_a.to_string());
    assert_eq!(fs::read_link(&entry).unwrap(), dir("it-range-a"));
    // What the host made for the machine is in its range.
    assert_eq!(owner(&dir("it-range-a").join("upper")), (base_a, base_a));
    assert_eq!(
        owner(&dir("it-range-a").join("upper/etc/hostname")),
        (base_a, base_a)
    );

    // Inside, the image's owners are the usual ones: root, and the shadow
    // group (not root) of /etc/shadow.
    assert_eq!(a.ok("stat -c '%u %g' /etc/passwd"), "0 0");
    let shadow_gid = image_shadow_owner.1 - uid_base();
    assert_ne!(shadow_gid, 0);
    assert_eq!(
        a.ok("stat -c '%u %g' /etc/shadow"),
        format!("0 {shadow_gid}")
    );

    // Writing a file of the image copies it up into A's range; new files
    // are A's too, whatever user inside owns them.
    a.ok("echo 'it-range-marker:x:4242:4242::/:/bin/sh' >> /etc/passwd");
    a.ok("echo a > /root/a-file && echo u > /tmp-a && chown 1000:1001 /tmp-a");
    let upper = dir("it-range-a").join("upper");
    assert_eq!(owner(&upper.join("etc/passwd")), (base_a, base_a));
    assert_eq!(owner(&upper.join("root/a-file")), (base_a, base_a));
    assert_eq!(owner(&upper.join("tmp-a")), (base_a + 1000, base_a + 1001));
    for f in ["etc/passwd", "root/a-file", "tmp-a"] {
        let (uid, gid) = owner(&upper.join(f));
        assert!(!in_range(uid, base_b) && !in_range(gid, base_b), "{f}");
        assert!(
            !in_range(uid, uid_base()) && !in_range(gid, uid_base()),
            "{f}"
        );
    }
    // The image is as it was, owners and contents.
    assert_eq!(fs::read(image.join("etc/passwd")).unwrap(), image_passwd);
    assert_eq!(owner(&image.join("etc/passwd")), (uid_base(), uid_base()));
    assert_eq!(owner(&image.join("etc/shadow")), image_shadow_owner);
    assert!(!image.join("root/a-file").exists());
    // B does not see A's change.
    let (code, _) = b.sh("grep -q it-range-marker /etc/passwd");
    assert_ne!(code, 0, "B sees A's /etc/passwd");
    assert!(!dir("it-range-b").join("upper/etc/passwd").exists());

    // A machine whose record names a range another live machine holds does
    // not start.
    backend().stop(&b.id).unwrap();
    let ids_b = dir("it-range-b").join("ids.json");
    let record_b = fs::read(&ids_b).unwrap();
    fs::write(&ids_b, format!("{{\"uid_base\":{base_a}}}")).unwrap();
    let err = backend().start(&b.id).unwrap_err();
    assert!(
        matches!(err, Error::UidRangeTaken { base, .. } if base == base_a),
        "{err}"
    );
    assert_eq!(
        backend().inspect(&b.id).unwrap().state,
        MachineState::Stopped
    );
    fs::write(&ids_b, record_b).unwrap();
    let info = backend().start(&b.id).unwrap();
    b.wait_ready();
    assert_eq!(mapped_base(info.pid.unwrap()), base_b);

    // The range survives a stop and start, and goes with the machine.
    backend().stop(&a.id).unwrap();
    let info = backend().start(&a.id).unwrap();
    a.wait_ready();
    assert_eq!(mapped_base(info.pid.unwrap()), base_a);
    assert_eq!(a.ok("cat /root/a-file"), "a");
    backend().destroy(&a.id).unwrap();
    assert!(
        fs::symlink_metadata(&entry).is_err(),
        "the range of a destroyed machine is still registered"
    );
}

/// Moves the owners of everything under `root` from one range to another.
fn shift(root: &Path, from: u32, to: u32) {
    let m = fs::symlink_metadata(root).unwrap();
    let map = |id: u32| {
        if in_range(id, from) {
            id - from + to
        } else {
            id
        }
    };
    std::os::unix::fs::lchown(root, Some(map(m.uid())), Some(map(m.gid()))).unwrap();
    if m.is_dir() {
        for e in fs::read_dir(root).unwrap() {
            shift(&e.unwrap().path(), from, to);
        }
    }
}

#[test]
fn machines_made_before_ranges_were_per_machine_still_start() {
    let _g = shared();
    let id = "it-range-old";
    let m = Machine::create(spec(id, Network::None));
    m.ok("echo old > /root/old && cp /etc/passwd /etc/passwd.bak");
    let base = recorded(id);
    backend().stop(&m.id).unwrap();
    // Make it what an older firepit left: no ids.json, no registry entry,
    // files in the image's range.
    fs::remove_file(dir(id).join("ids.json")).unwrap();
    fs::remove_file(Path::new(DEFAULT_REGISTRY).join(base.to_string())).unwrap();
    shift(&dir(id).join("upper"), base, uid_base());

    let info = backend().start(&m.id).unwrap();
    assert_eq!(info.state, MachineState::Running);
    m.wait_ready();
    assert_eq!(mapped_base(info.pid.unwrap()), uid_base());
    assert_eq!(m.ok("cat /root/old"), "old");
    assert_eq!(m.ok("stat -c %u /root/old /etc/hostname | sort -u"), "0");
    m.ok("echo new > /root/new");
    assert_eq!(
        owner(&dir(id).join("upper/root/new")),
        (uid_base(), uid_base())
    );
    assert!(!dir(id).join("ids.json").exists());
    backend().destroy(&m.id).unwrap();
    assert!(!dir(id).exists());
}
