//! The API against its document: schemathesis generates requests from
//! `docs/api/openapi.yaml` (valid ones and ones that break it, every
//! operation, then sequences that follow the links it infers) and sends them
//! to a daemon with real machines; every check it has must pass (`--checks
//! all`): no 5xx, only documented statuses, content types and headers,
//! responses that match their schemas, valid requests accepted (never 400)
//! and invalid ones refused, no 2xx without the token, and a destroyed
//! session gone.
//!
//! schemathesis (pinned in `xtask`) is installed by `cargo xtask test` into
//! `$FIREPIT_CACHE/venv-schemathesis`, which passes its path as
//! `FIREPIT_TEST_SCHEMATHESIS`. The run's seed is fixed ([`SEED`]), so the
//! suite sends the same cases every time and a failure is reproducible;
//! `FIREPIT_SCHEMATHESIS_SEED` runs another seed (explore with several
//! before changing the fixed one).
//!
//! What the run is given, and why:
//! - One running session whose id the session-scoped operations use (random
//!   ids would only ever get 404); the lifecycle operations (`GET`/`DELETE
//!   /v1/sessions/{id}`, stop, start) get random ids, and real ones from
//!   `POST /v1/sessions` in the stateful phase, which destroys what it makes.
//! - `follow=false` for the three NDJSON streams that otherwise never end.
//! - The stateful phase sends valid requests only (the coverage and fuzzing
//!   phases send invalid ones too): with a parameter fixed by the
//!   configuration, its invalid cases are not told apart from valid ones.
//! - The WebSocket routes answer a plain HTTP request (schemathesis cannot
//!   upgrade) with 426 after checking the request, so a valid request there
//!   may be answered 426 too; their upgrades are tested in `events.rs`,
//!   `terminal.rs` and `browser.rs`.
//! - `POST /v1/sessions/{id}/image` is left out: every image it made would
//!   stay in the tests' shared images dir (it is tested in `checkpoints.rs`).
//! - A small number of examples per operation, a time limit per request,
//!   and one worker, so the run fits the suite's time; whatever it made is
//!   destroyed by the harness (and the daemon's data dir goes with it).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::Daemon;

/// The seed of the suite's run (see the module docs).
const SEED: u64 = 20261129;

/// Test cases per operation and phase.
const MAX_EXAMPLES: &str = "10";
/// The run is stopped (and fails) if it takes longer: a hang guard, not a
/// speed budget.
const HANG_GUARD: Duration = Duration::from_secs(30 * 60);

fn schemathesis() -> PathBuf {
    let bin = std::env::var_os("FIREPIT_TEST_SCHEMATHESIS").map_or_else(
        || {
            let cache = std::env::var_os("FIREPIT_CACHE")
                .map_or_else(|| PathBuf::from("/var/cache/firepit"), PathBuf::from);
            cache.join("venv-schemathesis/bin/schemathesis")
        },
        PathBuf::from,
    );
    assert!(
        bin.is_file(),
        "schemathesis is not installed at {}: run the tests with `cargo xtask test` (as root), \
         which installs it into $FIREPIT_CACHE/venv-schemathesis",
        bin.display()
    );
    bin
}

/// The run's configuration (see the module docs for each part).
fn config(session: &str) -> String {
    format!(
        r#"# Written by crates/firepit/tests/it/schemathesis.rs.
# The stateful phase sends valid requests only: where a parameter is fixed
# below, it cannot tell its own invalid cases from valid ones (the coverage
# and fuzzing phases send both).
[phases.stateful]
generation.mode = "positive"

[[operations]]
include-path-regex = '^/v1/sessions/\{{id\}}/(events|services/\{{name\}}/logs)$'
parameters = {{ "path.id" = "{session}", "query.follow" = "false" }}

# `DELETE …/services/{{name}}` stops a service, and its log stays readable
# (what it printed before it stopped is what one reads next): the document
# says so, so reading it after the DELETE is no use after free.
[[operations]]
include-path = "/v1/sessions/{{id}}/services/{{name}}/logs"
checks.use_after_free.enabled = false

[[operations]]
include-path-regex = '^/(v1/sessions|git)/\{{id\}}/'
exclude-path-regex = '^/v1/sessions/\{{id\}}/(stop|start|events|services/\{{name\}}/logs)$'
parameters = {{ "path.id" = "{session}" }}

# Each image saved would stay in the tests' shared images dir; the route is
# tested in checkpoints.rs.
[[operations]]
include-path = "/v1/sessions/{{id}}/image"
enabled = false

[[operations]]
include-path = "/v1/triage/{{id}}/progress"
parameters = {{ "query.follow" = "false" }}

[[operations]]
include-path-regex = '/(events/ws|pty/\{{name\}}|browser/live)$'
checks.positive_data_acceptance.expected-statuses = [101, 404, 409, 426]
"#
    )
}

/// Runs `cmd` with its output in `log`; `None` when the hang guard stopped it.
fn run_logged(mut cmd: Command, log: &Path) -> Option<std::process::ExitStatus> {
    let out = std::fs::File::create(log).unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_api_keeps_to_its_document() {
    let bin = schemathesis();
    let d = Daemon::start("st");
    let session = d.new_session(&[]);
    let dir = d.data_dir().join("schemathesis");
    std::fs::create_dir_all(&dir).unwrap();
    let config_file = dir.join("schemathesis.toml");
    std::fs::write(&config_file, config(&session)).unwrap();
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api/openapi.yaml");

    let mut cmd = Command::new(&bin);
    // Its files (hypothesis' database, reports) stay in the daemon's dir.
    cmd.current_dir(&dir)
        .arg("--config-file")
        .arg(&config_file)
        .arg("run")
        .arg(&spec)
        .args(["--url", &d.url])
        .args(["--header", &format!("Authorization: Bearer {}", d.token)])
        .args(["--checks", "all"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--workers", "1"])
        .args(["--request-timeout", "20"])
        .args(["--generation-database", "none"])
        .args(["--no-color"]);
    let seed = std::env::var("FIREPIT_SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.to_string());
    cmd.arg("--seed").arg(seed);
    let log = dir.join("output.txt");
    let started = Instant::now();
    let status = run_logged(cmd, &log);
    let mut output = String::new();
    std::fs::File::open(&log)
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    // The run's length, for the record (the suite prints it with --nocapture).
    println!(
        "schemathesis ran for {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let status = status.unwrap_or_else(|| {
        panic!(
            "schemathesis was still running after {} minutes:\n{output}\ndaemon log:\n{}",
            HANG_GUARD.as_secs() / 60,
            d.log()
        )
    });
    assert!(
        status.success(),
        "schemathesis found requests the daemon answers against docs/api/openapi.yaml \
         ({status}):\n{output}\ndaemon log (end):\n{}{}",
        tail(&d.log(), 20_000),
        d.guest_logs()
    );
    // All but `POST /v1/sessions/{id}/image`, left out (see the module docs).
    let routes = firepit_daemon::api::ROUTES.len() - 1;
    assert!(
        output.contains(&format!("Tested: {routes}")),
        "not every one of the {routes} operations was tested:\n{output}"
    );

    // The daemon still answers and still has the session it was given.
    let listed = d.ok(&["ls"]);
    assert!(listed.contains(&session), "{listed}");
}

fn tail(s: &str, n: usize) -> &str {
    let mut i = s.len().saturating_sub(n);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}
