//! The web UI end to end, in real headless Chromium (Debian's `chromium`)
//! driven by playwright-core from `ui/e2e/ui.mjs`: log in, make a session,
//! `echo hi` in the terminal, a preview of `python3 -m http.server 8000`, a
//! chat with the stand-in model (streamed reply, tool call), a share link
//! opened in a fresh browser context, a reload in the middle of an agent run
//! (nothing lost or doubled), a network drop, services and their logs, a
//! daemon restart on the same port (resumed from the cursor), a crashing
//! service's problem shown in the chat, files
//! edited and saved, stop and start from the session page, the sessions list (stop, start, destroy), and the chat's
//! guidance on a second daemon with no model.
//!
//! Each step's screenshot is kept in `<target dir>/tmp/ui-e2e/`. The script's
//! one npm dependency is installed once by `npm ci` into
//! `$FIREPIT_CACHE/ui-e2e/deps-<lock hash>` (npm's cache in `$FIREPIT_CACHE/npm`).

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::agent::{Script, stand_in, turn};
use crate::harness::Daemon;

/// Longest the whole browser script may take before it counts as hung.
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

pub(crate) fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/e2e")
}

fn cache_dir() -> PathBuf {
    std::env::var_os("FIREPIT_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/firepit"), PathBuf::from)
}

/// FNV-1a: a stable name for a lock file's contents.
fn fnv(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{h:016x}")
}

/// A dir whose `node_modules` holds the script's dependencies.
pub(crate) fn deps() -> PathBuf {
    let src = e2e_dir();
    let lock = std::fs::read(src.join("package-lock.json")).unwrap();
    let root = cache_dir().join("ui-e2e");
    let dir = root.join(format!("deps-{}", fnv(&lock)));
    if dir
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        return dir;
    }
    let scratch = root.join(format!("scratch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    for f in ["package.json", "package-lock.json"] {
        std::fs::copy(src.join(f), scratch.join(f)).unwrap();
    }
    let out = Command::new("npm")
        .current_dir(&scratch)
        .args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--cache",
        ])
        .arg(cache_dir().join("npm"))
        .output()
        .unwrap_or_else(|e| {
            panic!("npm is needed for the UI tests (apt-get install nodejs npm): {e}")
        });
    assert!(
        out.status.success(),
        "npm ci for the UI tests failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Another test run may have got there first; either copy is the same.
    if std::fs::rename(&scratch, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    assert!(
        dir.join("node_modules/playwright-core/package.json")
            .is_file()
    );
    dir
}

pub(crate) fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.is_file(),
        "{} is missing: the UI tests drive Debian's chromium package (`cargo xtask test` installs it)",
        path.display()
    );
    path
}

/// The UI's origin for daemon `d`: the preview domain's (`localhost`), as
/// `up` prints it.
pub(crate) fn ui_origin(d: &Daemon) -> String {
    format!(
        "http://localhost:{}",
        d.url.rsplit(':').next().unwrap().trim_end_matches('/')
    )
}

/// Runs `ui/e2e/<script>` with node against daemon `d` (`FIREPIT_URL`,
/// `FIREPIT_TOKEN`), the script's dependencies, Chromium, the screenshot dir
/// `<shots>` in the target's temp dir (emptied first) and `env`;
/// fails the test when the script hangs past [`SCRIPT_LIMIT`], fails, or
/// misses one of `steps` (each printed as `step <n> <name>: ok`). Returns
/// its standard output and the screenshot dir.
pub(crate) fn run_script(
    d: &Daemon,
    script: &str,
    shots: &str,
    env: &[(&str, &std::ffi::OsStr)],
    steps: &[&str],
) -> (String, PathBuf) {
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join(shots);
    let _ = std::fs::remove_dir_all(&shots);
    let mut child = Command::new("node")
        .arg(e2e_dir().join(script))
        .env("FIREPIT_URL", ui_origin(d))
        .env("FIREPIT_TOKEN", &d.token)
        .env("E2E_DEPS", deps())
        .env("E2E_SHOTS", &shots)
        .env("CHROMIUM", chromium())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("node is needed for the UI tests: {e}"));
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let report = format!(
        "stdout:\n{out}\nstderr:\n{err}\nscreenshots: {}\ndaemon log:\n{}",
        shots.display(),
        d.log()
    );
    let status = status.unwrap_or_else(|| panic!("the browser script hung:\n{report}"));
    assert!(
        status.success(),
        "the browser script failed ({status}):\n{report}"
    );
    for step in steps {
        assert!(
            out.contains(&format!(" {step}: ok")),
            "step {step} did not pass:\n{report}"
        );
    }
    (out, shots)
}

/// The file names in `dir`.
pub(crate) fn file_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_web_ui_works_end_to_end_in_chromium() {
    let script: Script = Default::default();
    script.lock().unwrap().0.extend([
        turn(
            "Let me look around.",
            &[("call_1", "exec", json!({"command": "echo from-the-agent"}))],
        ),
        turn("All done here. It printed:\n```\nfrom-the-agent\n```\n", &[]),
        turn(
            "Waiting for the go file.",
            &[(
                "call_3",
                "exec",
                json!({"command": "while [ ! -e /tmp/go ]; do sleep 0.1; done; echo released", "timeout_secs": 900}),
            )],
        ),
        turn("Released and finished.", &[]),
    ]);
    let model = stand_in(script.clone());
    let mut d = Daemon::start_with(
        "t60",
        &[
            ("FIREPIT_MODEL_URL", model.as_str()),
            ("FIREPIT_MODEL", "stand-in"),
        ],
    );
    // The UI's origin is the preview domain's (`localhost`), as `up` prints it:
    // previews allow framing by it, and its cookie signs previews in.
    let port = d.url.rsplit(':').next().unwrap().trim_end_matches('/');
    let url = format!("http://localhost:{port}");
    // A second daemon with no model, for the chat's guidance.
    let bare = Daemon::start("t61");
    let bare_url = format!(
        "http://localhost:{}",
        bare.url.rsplit(':').next().unwrap().trim_end_matches('/')
    );
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-e2e");
    let _ = std::fs::remove_dir_all(&shots);

    let mut child = Command::new("node")
        .arg(e2e_dir().join("ui.mjs"))
        .env("FIREPIT_URL", &url)
        .env("FIREPIT_TOKEN", &d.token)
        .env("FIREPIT_URL_NO_MODEL", &bare_url)
        .env("FIREPIT_TOKEN_NO_MODEL", &bare.token)
        .env("E2E_DEPS", deps())
        .env("E2E_SHOTS", &shots)
        .env("CHROMIUM", chromium())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("node is needed for the UI tests: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let mut out = String::new();
    let status = loop {
        // The script asks for a daemon restart in the middle, and goes on when
        // the daemon is back on the same port.
        while let Ok(line) = lines.try_recv() {
            if line == "restart-daemon" {
                d.restart_on_same_port(15);
                stdin.write_all(b"restarted\n").unwrap();
            }
            out.push_str(&line);
            out.push('\n');
        }
        if let Some(status) = child.try_wait().unwrap() {
            // What it printed last.
            std::thread::sleep(Duration::from_millis(100));
            out.extend(lines.try_iter().map(|l| l + "\n"));
            break Some(status);
        }
        if started.elapsed() > SCRIPT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = err.join().unwrap();
    let report = format!(
        "stdout:\n{out}\nstderr:\n{err}\nscreenshots: {}\ndaemon log:\n{}",
        shots.display(),
        d.log()
    );
    let status = status.unwrap_or_else(|| panic!("the browser script hung:\n{report}"));
    assert!(
        status.success(),
        "the browser script failed ({status}):\n{report}"
    );
    for step in [
        "login",
        "new-session",
        "terminal-echo",
        "preview",
        "chat",
        "browser-tab",
        "browser-live-view",
        "share",
        "reload-mid-run",
        "network-drop-and-services",
        "daemon-restart",
        "files",
        "stop-and-start",
        "rewind",
        "sessions-list",
        "no-model-guidance",
    ] {
        assert!(
            out.contains(&format!(" {step}: ok")),
            "step {step} did not pass:\n{report}"
        );
        assert!(
            std::fs::read_dir(&shots)
                .unwrap()
                .filter_map(|e| e.ok())
                .any(|e| e
                    .file_name()
                    .to_string_lossy()
                    .ends_with(&format!("-{step}.png"))),
            "no screenshot of {step}:\n{report}"
        );
    }
    // The model saw the tool results the UI showed.
    let requests = script.lock().unwrap().1.clone();
    assert_eq!(requests.len(), 4, "four model calls");
    assert!(
        requests[1]["messages"]
            .to_string()
            .contains("from-the-agent")
    );
    assert!(requests[3]["messages"].to_string().contains("released"));
    assert!(
        requests[3]["messages"]
            .to_string()
            .contains("and mind the tests"),
        "the interjection reached the model"
    );
}
