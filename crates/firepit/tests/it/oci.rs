//! Machines on OCI images: images made by the test with umoci (an Alpine-style one whose
//! only userland is a static busybox, a distroless one without a shell), pushed with
//! skopeo to a real registry (Debian's `docker-registry`) on loopback or saved as an archive,
//! pulled and imported with the CLI, and run: the image's env and working directory reach
//! exec, an image without a shell keeps its session, and `image ls|rm` know who uses what.

use std::path::Path;
use std::process::Command;

use firepit_oci::testkit::Registry;

use crate::harness::{Daemon, images_dir};

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

/// An OCI layout at `layout` (tag `t`) whose one layer is `rootfs`, with `config` flags
/// for `umoci config`.
fn umoci_image(layout: &Path, rootfs: &Path, config: &[&str]) {
    let image = format!("{}:t", layout.display());
    run(Command::new("umoci").args(["init", "--layout"]).arg(layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    let bundle = layout.with_extension("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle));
    run(Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", rootfs.display()))
        .arg(bundle.join("rootfs")));
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle));
    if !config.is_empty() {
        run(Command::new("umoci")
            .args(["config", "--image", &image])
            .args(config));
    }
}

/// Removes the test's images from the shared images dir, and the layers only they used.
struct Cleanup(std::path::PathBuf, Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(store) = firepit_image::ImageStore::open(&self.0) else {
            return;
        };
        for name in &self.1 {
            let _ = store.remove(name);
            let _ = std::fs::remove_file(self.0.join(format!(".name-{name}.lock")));
        }
        if let Ok(blobs) = firepit_oci::blobs::BlobStore::open(&self.0) {
            let _ = firepit_oci::install::collect_garbage(&store, &blobs);
        }
    }
}

#[test]
fn machines_on_pulled_and_imported_images() {
    let d = Daemon::start("oci1");
    let tmp = tempfile::tempdir().unwrap();
    let images = images_dir();
    let images_arg = images.display().to_string();
    let suffix = &d.data_dir().file_name().unwrap().to_string_lossy()[..6].to_ascii_lowercase();
    let (musl, distroless) = (format!("oci-musl-{suffix}"), format!("oci-nosh-{suffix}"));
    let _cleanup = Cleanup(images.clone(), vec![musl.clone(), distroless.clone()]);

    // Alpine-style: a static busybox is the whole userland.
    let root = tmp.path().join("musl-root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("srv/app")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is missing");
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    let layout = tmp.path().join("musl");
    umoci_image(
        &layout,
        &root,
        &[
            "--config.env=GREETING=hello from the image",
            "--config.env=PATH=/bin",
            "--config.workingdir=/srv/app",
            "--config.entrypoint=/bin/sh",
            "--config.cmd=-c",
            "--config.cmd=echo \"$GREETING\" > /tmp/entrypoint-ran; exec sleep 1000",
        ],
    );
    let registry = Registry::start(None);
    registry.push(&layout, "t", "musl");
    let out = d.ok(&[
        "image",
        "pull",
        "--insecure",
        &format!("{}/musl:t", registry.addr),
        "--name",
        &musl,
        "--images-dir",
        &images_arg,
    ]);
    assert!(out.contains(&format!("as image {musl}")), "{out}");

    let id = d.new_session(&["--image", &musl]);
    assert_eq!(
        d.sh(&id, "echo $GREETING; pwd; busybox id -u"),
        "hello from the image\n/srv/app\n0\n"
    );
    // The entrypoint, on request, as a service.
    assert_eq!(
        d.sh(
            &id,
            "cat /tmp/entrypoint-ran 2>/dev/null || echo not started"
        ),
        "not started\n"
    );
    let with_ep = d.new_session(&["--image", &musl, "--entrypoint"]);
    let mut ran = String::new();
    for _ in 0..500 {
        ran = d.sh(&with_ep, "cat /tmp/entrypoint-ran 2>/dev/null || true");
        if !ran.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(ran, "hello from the image\n");
    assert!(d.ok(&["logs", &with_ep]).contains("entrypoint"));
    d.ok(&["rm", &with_ep]);

    // Distroless: no shell at all; exec of the image's own program works, and the shared
    // terminal runs the note that says why there is no shell.
    let root = tmp.path().join("nosh-root");
    std::fs::create_dir_all(root.join("app")).unwrap();
    std::fs::copy("/bin/busybox", root.join("app/busybox")).unwrap();
    let layout = tmp.path().join("nosh");
    umoci_image(&layout, &root, &["--config.entrypoint=/app/busybox"]);
    let archive = tmp.path().join("nosh.tar");
    run(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:t", layout.display()))
        .arg(format!("oci-archive:{}:t", archive.display())));
    let out = d.ok(&[
        "image",
        "import",
        &archive.display().to_string(),
        "--name",
        &distroless,
        "--images-dir",
        &images_arg,
    ]);
    assert!(out.contains(&format!("as image {distroless}")), "{out}");
    let bare = d.new_session(&["--image", &distroless]);
    assert_eq!(
        d.ok(&[
            "exec",
            &bare,
            "--",
            "/app/busybox",
            "echo",
            "no shell needed"
        ]),
        "no shell needed\n"
    );
    assert!(
        !d.run(&["exec", &bare, "--", "sh", "-c", "true"])
            .status
            .success()
    );
    let ptys = d.get_json(&format!("/v1/sessions/{bare}/pty"));
    assert!(
        ptys.to_string().contains("--no-shell-notice"),
        "the shared terminal should explain the missing shell: {ptys}"
    );

    // ls knows the source and the users; rm refuses an image in use.
    let ls = d.ok(&["image", "ls", "--images-dir", &images_arg]);
    let line = ls.lines().find(|l| l.starts_with(&musl)).unwrap();
    assert!(
        line.contains("registry") && line.contains("musl:t"),
        "{line}"
    );
    assert!(line.split_whitespace().nth(3) == Some("1"), "{line}");
    let out = d.run(&["image", "rm", &musl, "--images-dir", &images_arg]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{out:?}"
    );
    d.ok(&["rm", &id]);
    d.ok(&["rm", &bare]);
    d.ok(&["image", "rm", &musl, "--images-dir", &images_arg]);
    d.ok(&["image", "rm", &distroless, "--images-dir", &images_arg]);
    assert!(
        !d.ok(&["image", "ls", "--images-dir", &images_arg])
            .contains(&musl)
    );
}

/// A Dockerfile build: RUN in machines, COPY with .dockerignore, ENV, ARG, WORKDIR, USER;
/// a rebuild after a change in the last step reuses every earlier layer; a session on the
/// image sees what the build made; an unsupported instruction is refused with its line.
#[test]
fn dockerfile_build_caches_steps_and_runs_in_sessions() {
    let d = Daemon::start("oci2");
    let tmp = tempfile::tempdir().unwrap();
    let images = images_dir();
    let images_arg = images.display().to_string();
    let suffix = &d.data_dir().file_name().unwrap().to_string_lossy()[..6].to_ascii_lowercase();
    let name = format!("oci-built-{suffix}");
    let _cleanup = Cleanup(images.clone(), vec![name.clone()]);

    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(ctx.join("app/node_modules/dep")).unwrap();
    std::fs::write(ctx.join("app/hello.txt"), "hello from the context\n").unwrap();
    std::fs::write(ctx.join("app/secret.env"), "TOKEN=nope\n").unwrap();
    std::fs::write(ctx.join("app/node_modules/dep/index.js"), "x").unwrap();
    std::fs::write(ctx.join(".dockerignore"), "**/node_modules\napp/*.env\n").unwrap();
    let dockerfile = |last: &str| {
        format!(
            "FROM minimal\nARG GREETING=hi\nENV APP_HOME=/srv/app\nWORKDIR $APP_HOME\nCOPY app/ ./\n\
             RUN date +%s%N > /built-at && echo \"$GREETING from RUN\" > greeting && mkdir /data && chown 1234 /data\nUSER 1234\nEXPOSE 8080\n\
             CMD [\"cat\", \"greeting\"]\nRUN {last}\n"
        )
    };
    let file = ctx.join("Dockerfile");
    let build = |text: &str| {
        std::fs::write(&file, text).unwrap();
        d.run(&[
            "image",
            "build",
            &name,
            "-f",
            &file.display().to_string(),
            &ctx.display().to_string(),
            "--images-dir",
            &images_arg,
        ])
    };
    let out = build(&dockerfile("echo one > /data/last && id -u >> /data/last"));
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains(&format!("built image {name}")), "{stdout}");

    let id = d.new_session(&["--image", &name]);
    assert_eq!(
        d.sh(
            &id,
            "pwd; cat greeting hello.txt /data/last; echo $APP_HOME; ls"
        ),
        "/srv/app\nhi from RUN\nhello from the context\none\n1234\n/srv/app\ngreeting\nhello.txt\n"
    );
    let built_at = d.sh(&id, "cat /built-at");
    let config = d.sh(&id, "cat /.firepit/config.json");
    assert!(
        config.contains("\"user\": \"1234\"") && config.contains("8080/tcp"),
        "{config}"
    );
    d.ok(&["rm", &id]);

    // The last step changes: everything before it comes from the cache.
    let out = build(&dockerfile("echo two > /data/last && id -u >> /data/last"));
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("1 layers made"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains("line 6: cached"), "{stderr}");
    let id = d.new_session(&["--image", &name]);
    assert_eq!(d.sh(&id, "cat /data/last"), "two\n1234\n");
    assert_eq!(
        d.sh(&id, "cat /built-at"),
        built_at,
        "the earlier RUN ran again"
    );
    d.ok(&["rm", &id]);

    // Refused with the line number.
    let out = build("FROM minimal\nRUN true\nHEALTHCHECK CMD true\n");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        stderr.contains("line 3") && stderr.contains("HEALTHCHECK"),
        "{stderr}"
    );
    // A failing RUN names its line and leaves the old image in place.
    let out = build("FROM minimal\nRUN exit 3\n");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        stderr.contains("line 2") && stderr.contains("exit code 3"),
        "{stderr}"
    );
    let id = d.new_session(&["--image", &name]);
    assert_eq!(d.sh(&id, "cat /data/last"), "two\n1234\n");
    d.ok(&["rm", &id]);
}

/// Two images that share their first layer: the second one's layer removes files (umoci
/// writes whiteouts) and adds some. Machines on them see each image as its layers say,
/// through the stacked lower dirs, and the shared layer is one directory on disk.
#[test]
fn stacked_layers_shared_and_whited_out_in_machines() {
    let d = Daemon::start("oci3");
    let tmp = tempfile::tempdir().unwrap();
    let images = images_dir();
    let images_arg = images.display().to_string();
    let suffix = &d.data_dir().file_name().unwrap().to_string_lossy()[..6].to_ascii_lowercase();
    let (base, derived) = (
        format!("oci-base-{suffix}"),
        format!("oci-derived-{suffix}"),
    );
    let saved = format!("oci-saved-{suffix}");
    let _cleanup = Cleanup(
        images.clone(),
        vec![base.clone(), derived.clone(), saved.clone()],
    );

    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("data/sub")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is missing");
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    std::fs::write(root.join("etc/keep"), "kept\n").unwrap();
    std::fs::write(root.join("etc/gone"), "gone\n").unwrap();
    std::fs::write(root.join("data/sub/old"), "old\n").unwrap();
    let layout = tmp.path().join("layers");
    umoci_image(&layout, &root, &["--config.env=PATH=/bin"]);
    // The second layer: made from the first by umoci (whiteouts for what it removes).
    let image = format!("{}:t", layout.display());
    run(Command::new("umoci").args(["tag", "--image", &image, "base"]));
    let bundle = tmp.path().join("second");
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle));
    std::fs::remove_file(bundle.join("rootfs/etc/gone")).unwrap();
    std::fs::remove_dir_all(bundle.join("rootfs/data/sub")).unwrap();
    std::fs::write(bundle.join("rootfs/data/new"), "new\n").unwrap();
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle));
    let registry = Registry::start(None);
    registry.push(&layout, "base", "stack");
    registry.push(&layout, "t", "stack");
    for (tag, name) in [("base", &base), ("t", &derived)] {
        d.ok(&[
            "image",
            "pull",
            "--insecure",
            &format!("{}/stack:{tag}", registry.addr),
            "--name",
            name,
            "--images-dir",
            &images_arg,
        ]);
    }
    let store = firepit_image::ImageStore::open(&images).unwrap();
    let (lb, ld) = (
        store.get(&base).unwrap().lowers(),
        store.get(&derived).unwrap().lowers(),
    );
    assert_eq!((lb.len(), ld.len()), (2, 3), "{lb:?} {ld:?}");
    assert_eq!(
        lb[1], ld[2],
        "the first layer is one directory for both images"
    );

    let on_derived = d.new_session(&["--image", &derived]);
    assert_eq!(
        d.sh(
            &on_derived,
            "cat /etc/keep /data/new; ls /etc/gone /data/sub 2>&1 >/dev/null | busybox wc -l; ls /data"
        ),
        "kept\nnew\n2\nnew\n"
    );
    // The machine writes over its layers; the image's dirs do not change.
    d.sh(&on_derived, "echo mine > /etc/keep; rm /data/new");
    assert_eq!(
        std::fs::read_to_string(ld[2].join("etc/keep")).unwrap(),
        "kept\n"
    );
    // Saved from the session: its layers and the machine's changes, merged by the kernel.
    let out = d.ok(&["image", "save", &on_derived, &saved]);
    assert!(out.contains(&format!("saved image {saved}")), "{out}");
    let on_saved = d.new_session(&["--image", &saved]);
    assert_eq!(
        d.sh(
            &on_saved,
            "cat /etc/keep; ls /etc/gone /data/sub /data/new 2>&1 >/dev/null | busybox wc -l"
        ),
        "mine\n3\n"
    );
    d.ok(&["rm", &on_saved]);
    let on_base = d.new_session(&["--image", &base]);
    assert_eq!(
        d.sh(&on_base, "cat /etc/keep /etc/gone /data/sub/old"),
        "kept\ngone\nold\n"
    );
    d.ok(&["rm", &on_derived]);
    d.ok(&["rm", &on_base]);
}

/// A multi-stage Dockerfile whose first stage RUNs in a machine: the final image takes only
/// what `COPY --from` names, a stage nothing needs is not built, `--target` picks a stage.
#[test]
fn multi_stage_dockerfile_copies_what_a_stage_built() {
    let d = Daemon::start("oci4");
    let tmp = tempfile::tempdir().unwrap();
    let images = images_dir();
    let images_arg = images.display().to_string();
    let suffix = &d.data_dir().file_name().unwrap().to_string_lossy()[..6].to_ascii_lowercase();
    let (name, stage) = (format!("oci-multi-{suffix}"), format!("oci-stage-{suffix}"));
    let _cleanup = Cleanup(images.clone(), vec![name.clone(), stage.clone()]);
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let file = ctx.join("Dockerfile");
    std::fs::write(
        &file,
        "FROM minimal AS builder\nRUN mkdir -p /out && echo built > /out/artifact && echo scratch > /tmp-file\n\
         FROM minimal AS never\nRUN exit 7\n\
         FROM minimal\nCOPY --from=builder /out/artifact /app/artifact\n",
    )
    .unwrap();
    let build = |image: &str, target: Option<&str>| {
        let mut args = vec![
            "image".to_owned(),
            "build".into(),
            image.into(),
            "-f".into(),
            file.display().to_string(),
            ctx.display().to_string(),
            "--images-dir".into(),
            images_arg.clone(),
        ];
        if let Some(t) = target {
            args.extend(["--target".into(), t.into()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        d.run(&args)
    };
    let out = build(&name, None);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("line 4"),
        "the unneeded stage ran: {stderr}"
    );
    let id = d.new_session(&["--image", &name]);
    assert_eq!(
        d.sh(&id, "cat /app/artifact; ls /out /tmp-file 2>&1 | wc -l"),
        "built\n2\n"
    );
    d.ok(&["rm", &id]);
    let out = build(&stage, Some("builder"));
    assert!(out.status.success(), "{out:?}");
    let id = d.new_session(&["--image", &stage]);
    assert_eq!(d.sh(&id, "cat /out/artifact /tmp-file"), "built\nscratch\n");
    d.ok(&["rm", &id]);
}
