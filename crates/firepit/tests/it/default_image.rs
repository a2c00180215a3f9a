//! The `default` image, in real machines: its toolchains meet the floors current frameworks
//! set (Node.js 20.19 for Vite 7, Elixir 1.15 for Phoenix 1.8), PostgreSQL runs as the
//! session's service and keeps its data across stop and start, SQLite and Redis answer, an
//! Elixir project and a Node project build and pass their tests offline, and a Vite 7 project
//! is created, built and served from the npm packages the host fetched, its preview answering.
//!
//! `cargo xtask test` builds the image (once, into its cache) and names it in
//! `FIREPIT_TEST_DEFAULT_IMAGE`; it also fetches Vite 7 with the host's npm into a cache tarball
//! (`FIREPIT_TEST_NPM_CACHE`), which the test copies into the machine: the machines here have
//! no network (`--network none`), as the test suite reaches nothing beyond loopback.

use crate::harness::Daemon;
use crate::preview::{bearer, get, host, wait_for};

/// The `default` image's name in the test images dir.
fn default_image() -> String {
    std::env::var("FIREPIT_TEST_DEFAULT_IMAGE").unwrap_or_else(|_| {
        panic!(
            "FIREPIT_TEST_DEFAULT_IMAGE is not set: run the tests with `cargo xtask test` (as root), \
             which builds the `default` image and sets it"
        )
    })
}

/// A version as numbers: `v20.19.2` → `[20, 19, 2]`.
fn numbers(version: &str) -> Vec<u32> {
    version
        .trim()
        .trim_start_matches('v')
        .split(['.', '-', '+', ' '])
        .map_while(|p| p.parse().ok())
        .collect()
}

/// Whether `version` is at least `floor` (compared number by number).
fn at_least(version: &str, floor: &[u32]) -> bool {
    numbers(version).as_slice() >= floor
}

#[test]
fn version_floors() {
    assert!(at_least("v20.19.2", &[20, 19]));
    assert!(!at_least("v18.20.4", &[20, 19]));
    assert!(at_least("1.18.3", &[1, 15]));
    assert!(!at_least("1.14.0", &[1, 15]));
    assert!(!at_least("", &[1]));
}

fn session(d: &Daemon, extra: &[&str]) -> String {
    let image = default_image();
    let mut args = vec![
        "--image",
        image.as_str(),
        "--network",
        "none",
        "--memory",
        "4G",
    ];
    args.extend_from_slice(extra);
    d.new_session(&args)
}

#[test]
fn toolchains_meet_the_floors() {
    let d = Daemon::start("dimg1");
    let id = session(&d, &[]);
    let node = d.sh(&id, "node --version");
    assert!(at_least(&node, &[20, 19]), "node {node}");
    assert!(!d.sh(&id, "npm --version").trim().is_empty());
    let elixir = d.sh(
        &id,
        "elixir -e 'IO.puts(System.version())' 2>/dev/null | tail -n 1",
    );
    assert!(at_least(&elixir, &[1, 15]), "elixir {elixir}");
    let otp = d.sh(
        &id,
        "erl -noshell -eval 'io:format(\"~s\", [erlang:system_info(otp_release)]), halt().'",
    );
    assert!(at_least(&otp, &[25]), "otp {otp}");
    let python = d.sh(
        &id,
        "python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'",
    );
    assert!(at_least(&python, &[3, 11]), "python {python}");
    d.sh(
        &id,
        "python3 -m venv /tmp/venv && /tmp/venv/bin/pip --version",
    );
    let go = d.sh(&id, "go env GOVERSION");
    assert!(at_least(go.trim_start_matches("go"), &[1, 22]), "go {go}");
    let cargo = d.sh(&id, "cargo --version");
    assert!(
        at_least(cargo.trim_start_matches("cargo "), &[1, 80]),
        "cargo {cargo}"
    );
    for tool in [
        "git --version",
        "gh --version",
        "gcc --version",
        "make --version",
        "rg --version",
        "jq --version",
        "sqlite3 --version",
        "redis-server --version",
        "psql --version",
        "chromium --version",
        "rebar3 version",
        "vi --version",
        "nano --version",
    ] {
        d.sh(&id, &format!("{tool} >/dev/null"));
    }
    // The motd says what is there, and the image's manifest records it for `image ls`.
    let motd = d.sh(&id, "cat /etc/motd");
    assert!(
        motd.contains("Node.js") && motd.contains("firepit-postgres start"),
        "{motd}"
    );
    let listed = d.ok(&[
        "image",
        "ls",
        "--images-dir",
        crate::harness::images_dir().to_str().unwrap(),
    ]);
    let row = listed
        .lines()
        .skip_while(|l| !l.starts_with(&format!("{} ", default_image())))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        row.contains("Node.js 20.") || row.contains("Node.js 2"),
        "{listed}"
    );
    assert!(row.contains("Elixir 1."), "{listed}");
}

#[test]
fn postgres_runs_as_a_service_and_keeps_its_data() {
    let d = Daemon::start("dimg2");
    let id = session(&d, &["--postgres"]);
    let services = d.get_json(&format!("/v1/sessions/{id}/services"));
    assert!(services.to_string().contains("\"postgres\""), "{services}");
    // psql as root, and as an app connects (the URL the motd and the prompt give).
    assert_eq!(d.sh(&id, "psql -tAc 'select 1'").trim(), "1");
    d.sh(
        &id,
        "psql postgres://postgres:postgres@localhost:5432/app -v ON_ERROR_STOP=1 \
         -c 'create table notes (body text)' -c \"insert into notes values ('kept')\"",
    );
    // Its data is the session's: it stays across stop and start.
    d.ok(&["stop", &id]);
    d.ok(&["start", &id, "--postgres"]);
    let kept = d.sh(
        &id,
        "psql postgres://postgres:postgres@localhost:5432/app -tAc 'select body from notes'",
    );
    assert_eq!(kept.trim(), "kept");
    // The service is kept with the session: a plain start brings it back.
    d.ok(&["stop", &id]);
    d.ok(&["start", &id]);
    d.sh(
        &id,
        "for i in $(seq 600); do firepit-postgres status >/dev/null && exit 0; sleep 0.1; done; exit 1",
    );
    assert_eq!(
        d.sh(&id, "psql -d app -tAc 'select count(*) from notes'")
            .trim(),
        "1"
    );
    // Without the service, the helper starts it on demand.
    d.ok(&["service", "stop", &id, "postgres"]);
    d.ok(&["stop", &id]);
    d.ok(&["start", &id]);
    let services = d.get_json(&format!("/v1/sessions/{id}/services"));
    assert!(!services.to_string().contains("\"running\""), "{services}");
    d.sh(&id, "firepit-postgres start");
    assert_eq!(
        d.sh(&id, "psql -d app -tAc 'select count(*) from notes'")
            .trim(),
        "1"
    );
    // An image without PostgreSQL says so.
    let out = d.run(&["new", "--postgres", "--network", "none"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no PostgreSQL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sqlite_and_redis_answer() {
    let d = Daemon::start("dimg3");
    let id = session(&d, &[]);
    let sum = d.sh(
        &id,
        "sqlite3 /tmp/t.db 'create table t (n int); insert into t values (2), (3); select sum(n) from t'",
    );
    assert_eq!(sum.trim(), "5");
    d.sh(&id, "redis-server --daemonize yes --port 6379 >/dev/null");
    let pong = d.sh(
        &id,
        "for i in $(seq 100); do redis-cli ping 2>/dev/null && break; sleep 0.1; done",
    );
    assert!(pong.contains("PONG"), "{pong}");
    d.sh(&id, "redis-cli set k v >/dev/null");
    assert_eq!(d.sh(&id, "redis-cli get k").trim(), "v");
}

#[test]
fn elixir_and_node_projects_build_offline() {
    let d = Daemon::start("dimg4");
    let id = session(&d, &[]);
    let mix = d.sh(
        &id,
        "cd /workspace && mix new hello >/dev/null && cd hello && mix test 2>&1",
    );
    assert!(mix.contains("0 failures"), "{mix}");
    d.sh(
        &id,
        r#"mkdir -p /workspace/web/src && cd /workspace/web && cat > package.json <<'EOF'
{"name": "web", "version": "1.0.0", "type": "module",
 "scripts": {"build": "node build.mjs", "test": "node --test"}}
EOF
cat > src/greet.mjs <<'EOF'
export const greet = (name) => `hello ${name}`;
EOF
cat > build.mjs <<'EOF'
import { mkdirSync, writeFileSync } from "node:fs";
import { greet } from "./src/greet.mjs";
mkdirSync("dist", { recursive: true });
writeFileSync("dist/index.html", `<h1>${greet("firepit")}</h1>`);
EOF
cat > greet.test.mjs <<'EOF'
import test from "node:test";
import assert from "node:assert";
import { greet } from "./src/greet.mjs";
test("greets", () => assert.equal(greet("x"), "hello x"));
EOF"#,
    );
    let build = d.sh(
        &id,
        "cd /workspace/web && npm run build 2>&1 && cat dist/index.html",
    );
    assert!(build.contains("<h1>hello firepit</h1>"), "{build}");
    let test = d.sh(&id, "cd /workspace/web && npm test 2>&1");
    assert!(test.contains("pass 1") && test.contains("fail 0"), "{test}");
}

#[test]
fn a_vite_7_project_is_made_built_and_previewed() {
    let cache = std::env::var("FIREPIT_TEST_NPM_CACHE").unwrap_or_else(|_| {
        panic!(
            "FIREPIT_TEST_NPM_CACHE is not set: run the tests with `cargo xtask test`, which \
             fetches Vite 7 with the host's npm"
        )
    });
    let d = Daemon::start("dimg5");
    let id = session(&d, &[]);
    d.ok(&["cp", &cache, &format!("{id}:/tmp/npm-cache.tar")]);
    // The host's npm cache (`cache/`) and the lock of the project it made from the same
    // template, so the machine's npm installs by integrity from the cache.
    d.sh(
        &id,
        "mkdir -p /root/vite7 && tar -C /root/vite7 -xf /tmp/npm-cache.tar",
    );
    let made = d.sh(
        &id,
        "cd /workspace && export npm_config_cache=/root/vite7/cache \
         && npm create --offline -y vite@7 app -- --template vanilla </dev/null 2>&1 \
         && cd app && cp /root/vite7/package-lock.json . \
         && npm ci --offline --no-audit --no-fund 2>&1 && npx --offline vite --version",
    );
    assert!(made.contains("vite/7."), "{made}");
    let built = d.sh(&id, "cd /workspace/app && npm run build 2>&1 && ls dist");
    assert!(built.contains("index.html"), "{built}");
    d.ok(&[
        "exec",
        &id,
        "--",
        "sh",
        "-c",
        "cd /workspace/app && (nohup npx vite preview --host 127.0.0.1 --port 4173 >/tmp/preview.log 2>&1 &)",
    ]);
    let r = wait_for(&d, &id, 4173, "/");
    assert_eq!(
        r.status,
        200,
        "{r:?}\n{}",
        d.sh(&id, "cat /tmp/preview.log")
    );
    let again = get(&d, &host(&d, 4173, &id), "/", &[bearer(&d)]);
    assert!(
        String::from_utf8_lossy(&again.body).contains("<div id=\"app\">"),
        "{again:?}"
    );
}

#[test]
fn the_agents_prompt_names_the_images_tools() {
    let script: crate::agent::Script = Default::default();
    let url = crate::agent::stand_in(script.clone());
    let d = Daemon::start_with(
        "dimg6",
        &[
            ("FIREPIT_MODEL_URL", url.as_str()),
            ("FIREPIT_MODEL", "stand-in"),
        ],
    );
    let id = session(&d, &[]);
    d.ok(&["agent", &id, "what do you have?"]);
    let requests = script.lock().unwrap().1.clone();
    let system = requests[0]["messages"][0]["content"].as_str().unwrap_or("");
    let heading = format!("## The machine (image `{}`)", default_image());
    for want in [
        heading.as_str(),
        "Node.js (node) 20.",
        "Elixir (elixir, mix, iex) 1.",
        "PostgreSQL (firepit-postgres, psql) ",
        "command `/usr/local/bin/firepit-postgres run`",
    ] {
        assert!(system.contains(want), "{want:?} not in:\n{system}");
    }
}
