//! Sessions over their life: stop and start keep files, a daemon restart adopts
//! running machines, packages install inside without touching the host.

use std::path::PathBuf;

use crate::harness::Daemon;

#[test]
fn stop_and_start_keep_files() {
    let d = Daemon::start("t7");
    let id = d.new_session(&["--memory", "512M", "--cpus", "0.5"]);
    d.sh(&id, "echo kept > /root/note");
    assert!(d.ok(&["stop", &id]).contains("stopped"));
    let out = d.run(&["exec", &id, "--", "true"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("firepit start"),
        "{out:?}"
    );
    assert!(d.ok(&["start", &id]).contains("running"));
    assert_eq!(d.sh(&id, "cat /root/note"), "kept\n");
    d.ok(&["rm", &id]);
    assert!(!d.run(&["exec", &id, "--", "true"]).status.success());
}

#[test]
fn machines_outlive_a_daemon_restart() {
    let mut d = Daemon::start("t8");
    let id = d.new_session(&[]);
    d.sh(&id, "sleep 1000 >/dev/null 2>&1 & echo $! > /tmp/sleeper");
    let pid = d.sh(&id, "cat /tmp/sleeper");
    for signal in [15, 9] {
        d.restart(signal);
        assert!(d.ok(&["ls"]).contains("running"), "{}", d.ok(&["ls"]));
        // The same machine: the process started before the restart lives on.
        assert_eq!(d.sh(&id, "cat /tmp/sleeper"), pid);
        d.sh(&id, &format!("kill -0 {}", pid.trim()));
    }
}

/// `.deb` files the test cache holds (`cargo xtask test` downloads `hello`).
fn test_debs() -> PathBuf {
    PathBuf::from(std::env::var_os("FIREPIT_TEST_DEBS").expect(
        "FIREPIT_TEST_DEBS is not set: run the tests with `cargo xtask test`, which downloads the test packages",
    ))
}

#[test]
fn apt_installs_inside_and_the_host_is_untouched() {
    let deb = std::fs::read_dir(test_debs())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("hello_")
        })
        .expect("hello_*.deb in FIREPIT_TEST_DEBS");
    let host_status = std::fs::read("/var/lib/dpkg/status").unwrap();
    let d = Daemon::start("t9");
    let id = d.new_session(&[]);
    d.ok(&[
        "cp",
        deb.to_str().unwrap(),
        &format!("{id}:/root/hello.deb"),
    ]);
    d.sh(
        &id,
        "apt-get install -y /root/hello.deb >/dev/null 2>&1 || apt-get install -y /root/hello.deb",
    );
    assert_eq!(d.sh(&id, "hello"), "Hello, world!\n");
    assert!(
        d.sh(&id, "dpkg -s hello")
            .contains("Status: install ok installed")
    );
    assert_eq!(
        std::fs::read("/var/lib/dpkg/status").unwrap(),
        host_status,
        "the host's dpkg database changed"
    );
}

/// The host pid of session `id`'s init (the guest), found through /proc.
fn init_pid(id: &str) -> i32 {
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !cmdline.starts_with(b"/.firepit/guest") {
            continue;
        }
        let host =
            std::fs::read_to_string(format!("/proc/{pid}/root/etc/hostname")).unwrap_or_default();
        if host.trim() == id {
            return pid;
        }
    }
    panic!("no init found for {id}");
}

#[test]
fn a_machine_that_dies_on_its_own_is_marked_stopped() {
    let d = Daemon::start("t12");
    let id = d.new_session(&[]);
    d.sh(&id, "true");
    let pid = init_pid(&id);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The next request finds out, says what to do, and the session is stopped.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = d.run(&["exec", &id, "--", "true"]);
        assert!(!out.status.success(), "exec in a dead machine succeeded");
        if String::from_utf8_lossy(&out.stderr).contains("firepit start") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{out:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(d.ok(&["ls"]).contains("stopped"), "{}", d.ok(&["ls"]));
    assert!(d.ok(&["events", &id]).contains("stopped"));
    // And it starts again on its files.
    d.ok(&["start", &id]);
    assert_eq!(d.sh(&id, "hostname").trim(), id);
}
