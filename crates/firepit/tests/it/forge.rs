//! The forge end to end: a stand-in GitHub (`firepit_testkit::forge`) with real
//! git repositories, the daemon's broker inside machines, `firepit new
//! --repo`, `firepit triage` with a stand-in model, the session's own git
//! endpoint, and the token kept out of every machine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};

use crate::agent::{sse, turn};
use crate::harness::Daemon;
use firepit_testkit::forge::{SCOPELESS, StandIn, TOKEN};

const GREET: &str = "def greet(name):\n    return \"Hello \" + name\n";
const TEST_GREET: &str = "import unittest\n\nfrom greet import greet\n\n\nclass GreetTest(unittest.TestCase):\n    def test_greet(self):\n        self.assertEqual(greet(\"Ann\"), \"Hello Ann\")\n";

/// A repository with code, tests and instructions for agents.
fn app_repo(forge: &StandIn, full: &str) {
    forge.add_repo(
        full,
        &[
            ("README.md", "# app\n\nGreets people.\n"),
            ("AGENTS.md", "Run the tests with python3 -m unittest.\n"),
            ("greet.py", GREET),
            ("tests/test_greet.py", TEST_GREET),
        ],
    );
}

/// The issue whose model requests the stand-in refuses (the agent fails).
const REFUSED_BY_MODEL: u64 = 7;

/// Scripted turns per issue number; the turn is picked by how many assistant
/// messages the request already holds, so issues may run in parallel.
type Scripts = Arc<(HashMap<u64, Vec<Vec<String>>>, Mutex<Vec<Value>>)>;

async fn model(State(s): State<Scripts>, body: axum::body::Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.1.lock().unwrap().push(request.clone());
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let task = messages
        .iter()
        .find(|m| m["role"] == "user")
        .map(|m| m["content"].to_string())
        .unwrap_or_default();
    let issue = task
        .split("issue #")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok());
    if issue == Some(REFUSED_BY_MODEL) {
        return Response::builder()
            .status(400)
            .header("content-type", "application/json")
            .body(Body::from(
                json!({"error": {"message": "the stand-in refuses this request", "type": "invalid_request_error"}}).to_string(),
            ))
            .unwrap();
    }
    let done = messages.iter().filter(|m| m["role"] == "assistant").count();
    let chunks = issue
        .and_then(|n| s.0.get(&n))
        .and_then(|turns| turns.get(done).cloned())
        .unwrap_or_else(|| turn("(the script is over)", &[]));
    sse(chunks)
}

fn model_stand_in(scripts: Scripts) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(model))
        .with_state(scripts);
    crate::harness::serve_on_thread(listener, app);
    url
}

fn forge_env<'a>(forge: &'a StandIn, token: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("GITHUB_TOKEN", token),
        ("FIREPIT_GITHUB_URL", forge.url.as_str()),
    ]
}

#[test]
fn triage_turns_two_issues_into_pull_requests_and_reports_the_failures() {
    let forge = StandIn::start();
    let full = "octo/app";
    app_repo(&forge, full);
    forge.add_issue(
        full,
        1,
        "Add a farewell",
        "We need farewell(name) next to greet.",
        &["agent"],
    );
    forge.add_issue(
        full,
        2,
        "Document greet in the README",
        "Say how to call greet().",
        &["agent"],
    );
    forge.add_issue(
        full,
        3,
        "Make the greeting shorter",
        "Say Hi instead.",
        &["agent"],
    );
    forge.add_issue(
        full,
        4,
        "Protected change",
        "Touch the protected branch.",
        &["agent"],
    );
    forge.add_issue(full, 5, "Not for the agent", "No label.", &[]);
    forge.add_issue(
        full,
        6,
        "Nothing to do",
        "The agent changes nothing.",
        &["agent"],
    );
    forge.add_issue(full, 7, "The model fails", "The model refuses.", &["agent"]);
    forge.state().repos.get_mut(full).unwrap().comments.insert(
        1,
        vec![json!({"user": {"login": "ann"}, "body": "Please say Goodbye, not Bye."})],
    );
    forge.protect(full, "firepit/issue-4");

    let mut scripts = HashMap::new();
    scripts.insert(
        1,
        vec![
            turn(
                "Adding farewell.",
                &[(
                    "c1",
                    "write_file",
                    json!({"path": "/workspace/farewell.py", "content": "def farewell(name):\n    return \"Goodbye \" + name\n"}),
                )],
            ),
            turn("Added farewell(name) in farewell.py.", &[]),
        ],
    );
    scripts.insert(
        2,
        vec![
            turn(
                "",
                &[(
                    "c1",
                    "edit_file",
                    json!({"path": "/workspace/README.md", "old_text": "Greets people.\n", "new_text": "Greets people: `greet(\"Ann\")` returns `Hello Ann`.\n"}),
                )],
            ),
            turn("Documented greet() in the README.", &[]),
        ],
    );
    // The third breaks the tests: nothing may be pushed.
    scripts.insert(
        3,
        vec![
            turn(
                "",
                &[(
                    "c1",
                    "edit_file",
                    json!({"path": "/workspace/greet.py", "old_text": "\"Hello \"", "new_text": "\"Hi \""}),
                )],
            ),
            turn("Shortened the greeting.", &[]),
        ],
    );
    // The fourth's push is refused by the forge.
    scripts.insert(
        4,
        vec![
            turn(
                "",
                &[(
                    "c1",
                    "write_file",
                    json!({"path": "/workspace/NOTES.md", "content": "notes\n"}),
                )],
            ),
            turn("Added notes.", &[]),
        ],
    );
    // The sixth changes nothing.
    scripts.insert(6, vec![turn("There is nothing to change.", &[])]);
    let scripts: Scripts = Arc::new((scripts, Mutex::new(Vec::new())));
    let model_url = model_stand_in(scripts.clone());
    let mut env = forge_env(&forge, TOKEN);
    env.extend([
        ("FIREPIT_MODEL_URL", model_url.as_str()),
        ("FIREPIT_MODEL", "stand-in"),
    ]);
    let d = Daemon::start_with("t70", &env);

    let out = d.run(&[
        "triage",
        full,
        "--label",
        "agent",
        "--max",
        "10",
        "--parallel",
        "2",
        "--image",
        "git",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let ctx = format!(
        "stdout:\n{stdout}\nstderr:\n{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "failures make the exit status 1: {ctx}"
    );
    assert!(
        stdout.contains("done: 2 pull request(s) opened, 4 failed, 0 skipped"),
        "{ctx}"
    );
    assert!(
        stdout.contains("the tests failed, so nothing was pushed"),
        "{ctx}"
    );
    assert!(
        stdout.contains("AssertionError"),
        "the test output is in the report: {ctx}"
    );
    assert!(
        stdout.contains("the push of firepit/issue-4 was rejected"),
        "{ctx}"
    );
    assert!(
        stdout.contains("is protected"),
        "the forge's reason is in the report: {ctx}"
    );
    assert!(
        !stdout.contains("#5 "),
        "the unlabelled issue is left alone: {ctx}"
    );

    // Two pull requests, from real commits on their branches.
    {
        let st = forge.state();
        let pulls = &st.repos[full].pulls;
        assert_eq!(pulls.len(), 2, "{ctx}");
        for (n, changed) in [(1, "farewell.py"), (2, "README.md")] {
            let pr = pulls
                .iter()
                .find(|p| p["head"]["ref"] == format!("firepit/issue-{n}"))
                .unwrap_or_else(|| panic!("no pull request for #{n}: {ctx}"));
            let body = pr["body"].as_str().unwrap();
            assert!(body.starts_with(&format!("Closes #{n}.")), "{body}");
            assert!(
                body.contains(changed),
                "the diffstat names {changed}: {body}"
            );
            assert!(
                body.contains("`python3 -m unittest discover -s tests` passed."),
                "{body}"
            );
            assert_eq!(pr["base"]["ref"], "main");
            let comments = &st.repos[full].comments[&n];
            assert!(
                comments.iter().any(|c| c["body"]
                    .as_str()
                    .unwrap()
                    .contains(pr["html_url"].as_str().unwrap())),
                "the issue links the pull request: {comments:?}"
            );
        }
    }
    assert_eq!(
        forge
            .git(full, &["show", "firepit/issue-1:farewell.py"])
            .as_deref(),
        Some("def farewell(name):\n    return \"Goodbye \" + name\n")
    );
    let log = forge
        .git(full, &["log", "--format=%an|%s", "main..firepit/issue-2"])
        .unwrap();
    assert_eq!(
        log.trim(),
        "firepit agent|Document greet in the README (#2)"
    );
    assert_eq!(
        forge.git(
            full,
            &["rev-parse", "--verify", "refs/heads/firepit/issue-3"]
        ),
        None,
        "nothing of #3 was pushed"
    );
    assert_eq!(
        forge.git(
            full,
            &["rev-parse", "--verify", "refs/heads/firepit/issue-4"]
        ),
        None,
        "nothing of #4 was pushed"
    );

    // The agent got the issue's text and comments, and the repository's AGENTS.md.
    let requests = scripts.1.lock().unwrap().clone();
    let first_of_1 = requests
        .iter()
        .find(|r| r["messages"].to_string().contains("issue #1 of octo/app"))
        .unwrap()["messages"]
        .to_string();
    assert!(
        first_of_1.contains("Please say Goodbye, not Bye."),
        "{first_of_1}"
    );
    assert!(
        first_of_1.contains("Run the tests with python3 -m unittest."),
        "{first_of_1}"
    );

    // The job is in the API with each issue's outcome.
    let jobs: Value = d.get_json("/v1/triage");
    let job = &jobs[0];
    assert_eq!(job["state"], "finished", "{jobs}");
    let outcomes: Vec<String> = job["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| format!("{}={}", i["number"], i["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [
            "1=opened", "2=opened", "3=failed", "4=failed", "6=failed", "7=failed"
        ],
        "{jobs}"
    );

    // The tests that ran for an opened pull request are in its session's log.
    let opened = job["issues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["outcome"] == "opened")
        .unwrap();
    let session = opened["session"].as_str().unwrap();
    let events = d.ok(&["events", session]);
    assert!(
        events.contains("test_run") && events.contains("python3 -m unittest"),
        "{events}"
    );

    // A re-run skips the issues with open firepit pull requests.
    let again = d.run(&[
        "triage", full, "--label", "agent", "--max", "2", "--image", "git",
    ]);
    let again_out = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(
        again.status.success(),
        "{again_out}\n{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(
        again_out.contains("done: 0 pull request(s) opened, 0 failed, 2 skipped"),
        "{again_out}"
    );
    assert_eq!(forge.state().repos[full].pulls.len(), 2);

    // The token went to the forge and nowhere else, and no log holds it.
    assert!(!d.log().contains(TOKEN), "the daemon's log holds the token");
    assert!(!stdout.contains(TOKEN));
}

/// Looks for the token in every file, every process's environment and
/// command line inside the machine. The checker gets the token in two
/// halves, so its own command line does not hold it.
const SEARCH: &str = r#"
import os, sys
needle = (sys.argv[1] + sys.argv[2]).encode()
found = []
for top in ["/"]:
    for root, dirs, files in os.walk(top):
        if root == "/":
            dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
        for f in files:
            p = os.path.join(root, f)
            try:
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                with open(p, "rb") as fh:
                    if needle in fh.read():
                        found.append(p)
            except OSError:
                pass
me = str(os.getpid())
for pid in os.listdir("/proc"):
    if not pid.isdigit() or pid == me:
        continue
    for what in ("environ", "cmdline"):
        try:
            with open(f"/proc/{pid}/{what}", "rb") as fh:
                if needle in fh.read():
                    found.append(f"/proc/{pid}/{what}")
        except OSError:
            pass
print("searched; found:", found)
"#;

#[test]
fn a_session_from_a_repository_reaches_it_through_the_broker_and_never_sees_the_token() {
    let forge = StandIn::start();
    app_repo(&forge, "octo/app");
    app_repo(&forge, "octo/other");
    let d = Daemon::start_with("t71", &forge_env(&forge, TOKEN));
    let id = d.new_session(&["--image", "git", "--repo", "octo/app"]);

    // Cloned, with the forge's URL as the remote.
    assert_eq!(d.sh(&id, "cat /workspace/greet.py"), GREET);
    let remote = d.sh(&id, "git -C /workspace config remote.origin.url");
    assert_eq!(remote.trim(), format!("{}/octo/app.git", forge.url));
    // … which git rewrites to the broker on the machine's own loopback.
    let rewritten = d.sh(&id, "git -C /workspace remote get-url origin");
    assert!(rewritten.starts_with("http://127.0.0.1:"), "{rewritten}");
    assert_ne!(rewritten.trim(), remote.trim());

    // Fetch and push go through the broker, with the token added outside.
    d.sh(
        &id,
        "cd /workspace && git checkout -q -b from-machine && echo hi > hi.txt && git add hi.txt \
         && git commit -q -m hi && git push -q origin from-machine 2>&1",
    );
    assert_eq!(
        forge
            .git("octo/app", &["show", "from-machine:hi.txt"])
            .as_deref(),
        Some("hi\n")
    );
    // The REST API too, for this repository only.
    let api = d.sh(
        &id,
        ". /etc/profile.d/firepit-forge.sh && curl -s $FIREPIT_FORGE_API/repos/octo/app",
    );
    assert!(api.contains("\"full_name\":\"octo/app\""), "{api}");
    hostile_requests_from_the_machine_never_reach_the_forge(&d, &id, &forge);
    let other = d.run(&[
        "exec",
        &id,
        "--",
        "sh",
        "-c",
        &format!(
            "GIT_TERMINAL_PROMPT=0 git ls-remote {}/octo/other.git 2>&1",
            forge.url
        ),
    ]);
    let other_out = String::from_utf8_lossy(&other.stdout);
    assert!(
        !other.status.success(),
        "another repository is refused: {other_out}"
    );
    assert!(other_out.contains("may reach only octo/app"), "{other_out}");
    let other_api = d.sh(
        &id,
        ". /etc/profile.d/firepit-forge.sh && curl -s -o /dev/null -w '%{http_code}' $FIREPIT_FORGE_API/repos/octo/other",
    );
    assert_eq!(other_api, "403");

    // The broker's port is no preview: not listed, not proxied, no event.
    let broker_port = d
        .sh(
            &id,
            "sed -n 's|.*127.0.0.1:\\([0-9]*\\)/api|\\1|p' /etc/profile.d/firepit-forge.sh",
        )
        .trim()
        .to_owned();
    assert!(broker_port.parse::<u16>().is_ok(), "{broker_port:?}");
    let ports = d.ok(&["ports", &id]);
    assert!(!ports.contains(&broker_port), "{ports}");
    let events = d.ok(&["events", &id]);
    assert!(!events.contains(&format!("{broker_port}-{id}")), "{events}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        let port = d.url.rsplit(':').next().unwrap().to_owned();
        d.http()
            .get(format!("{}/api/repos/octo/app", d.url))
            .header("host", format!("{broker_port}-{id}.localhost:{port}"))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_ne!(status, 200, "the broker is reachable as a preview");

    // The token is in no file, environment or command line of the machine.
    let (a, b) = TOKEN.split_at(TOKEN.len() / 2);
    let result = d.ok(&["exec", &id, "--", "python3", "-c", SEARCH, a, b]);
    assert_eq!(result.trim(), "searched; found: []");
    // The checker does find what is there (it can fail).
    d.sh(&id, &format!("echo {a}{b}-not > /root/bait"));
    let bait = d.ok(&["exec", &id, "--", "python3", "-c", SEARCH, a, b]);
    assert!(bait.contains("/root/bait"), "{bait}");
    assert!(!d.log().contains(TOKEN), "the daemon's log holds the token");

    // Nothing the stand-in received named anything but octo/app (and it
    // did record what passed).
    let received = forge.state().received.clone();
    assert!(
        received
            .iter()
            .any(|r| r.starts_with("GET /octo/app.git/info/refs?service=git-receive-pack")),
        "{received:?}"
    );
    for got in &received {
        let path = got.split(' ').nth(1).unwrap_or("");
        assert!(
            path == "/api/v3/repos/octo/app"
                || path.starts_with("/api/v3/repos/octo/app/")
                || path.starts_with("/api/v3/repos/octo/app?")
                || path.starts_with("/octo/app.git/"),
            "{got}"
        );
    }

    // After a restart of the machine, and of the daemon, the broker serves it again.
    d.ok(&["stop", &id]);
    d.ok(&["start", &id]);
    d.sh(&id, "cd /workspace && git fetch -q origin 2>&1");
    let mut d = d;
    d.restart(15);
    d.sh(&id, "cd /workspace && git fetch -q origin 2>&1");
}

/// The machine's root sends requests as written (`curl --path-as-is
/// --request-target`) that would leave the repository or its allowed writes
/// if the broker decided on anything but the path it sends: each gets a 4xx
/// from the broker and the stand-in forge receives none of them.
fn hostile_requests_from_the_machine_never_reach_the_forge(d: &Daemon, id: &str, forge: &StandIn) {
    let up = "%2e%2e/%2e%2e/%2e%2e/%2e%2e";
    let long = format!("/api/repos/octo/app/{}", "a".repeat(5000));
    let attacks: Vec<(&str, String)> = vec![
        ("GET", format!("/api/repos/octo/app/issues/{up}/user")),
        (
            "GET",
            "/api/repos/octo/app/issues/%2E%2E/%2E%2E/%2E%2E/%2E%2E/user".into(),
        ),
        (
            "GET",
            "/api/repos/octo/app/issues/.%2e/.%2e/.%2e/.%2e/user".into(),
        ),
        (
            "GET",
            "/api/repos/octo/app/issues/%252e%252e/%252e%252e/%252e%252e/%252e%252e/user".into(),
        ),
        (
            "PATCH",
            "/api/repos/octo/app/issues/%2e%2e/%2e%2e/%2e%2e/octo/other/git/refs/heads/main".into(),
        ),
        ("POST", "/api/repos/octo/app/issues/%2e%2e/hooks".into()),
        ("POST", "/api/repos/octo/app/issues/%2E%2E/keys".into()),
        ("POST", format!("/api/repos/octo/app/pulls/{up}/user/repos")),
        (
            "GET",
            "/api/repos/octo/app/issues%2f..%2f..%2f..%2f..%2fuser".into(),
        ),
        (
            "GET",
            "/api/repos/octo/app/issues%5c..%5c..%5c..%5c..%5cuser".into(),
        ),
        (
            "GET",
            "/api/repos/octo/app/issues\\..\\..\\..\\..\\user".into(),
        ),
        ("GET", "/api/repos/octo/app//..//..//user".into()),
        ("GET", "/api/repos/octo/app/../../other".into()),
        ("GET", "/api/repos/octo/app/..;/..;/other".into()),
        ("GET", long),
        ("GET", "/api/repos/octo/other".into()),
        ("GET", "/api/repos/OCTO/OTHER/issues".into()),
        ("GET", "/api/user".into()),
        ("DELETE", "/api/repos/octo/app".into()),
        ("PATCH", "/api/repos/octo/app".into()),
        ("PUT", "/api/repos/octo/app/git/refs/heads/main".into()),
        ("PATCH", "/api/repos/octo/app/git/refs/heads/main".into()),
        ("POST", "/api/repos/octo/app/git/refs".into()),
        ("POST", "/api/repos/octo/app/hooks".into()),
        ("POST", "/api/repos/octo/app/keys".into()),
        ("POST", "/api/repos/octo/app/merges".into()),
        ("PUT", "/api/repos/octo/app/pulls/1/merge".into()),
        ("POST", "/api/repos/octo/app/issues?_method=DELETE".into()),
        ("GET", "/api/repos/octo/app?/../../../user".into()),
        (
            "GET",
            "/octo/other.git/info/refs?service=git-upload-pack".into(),
        ),
        (
            "GET",
            "/octo/app.git/info/%2e%2e/%2e%2e/other.git/info/refs?service=git-upload-pack".into(),
        ),
        ("POST", "/octo/app.git/git-receive-pack?x=1".into()),
        ("GET", "http://127.0.0.1:1/user".into()),
    ];
    let mut script =
        String::from(". /etc/profile.d/firepit-forge.sh\nB=${FIREPIT_FORGE_API%/api}\n");
    for (method, target) in &attacks {
        let data = if *method == "GET" { "" } else { "--data '{}'" };
        script.push_str(&format!(
            "curl -s -o /dev/null -w '%{{http_code}}\\n' --path-as-is -X {method} --request-target '{target}' -H 'content-type: application/json' {data} \"$B/\"\n"
        ));
    }
    let before = forge.state().received.len();
    let codes = d.sh(id, &script);
    let codes: Vec<&str> = codes.lines().collect();
    assert_eq!(codes.len(), attacks.len(), "{codes:?}");
    for ((method, target), code) in attacks.iter().zip(&codes) {
        let code: u16 = code.parse().unwrap_or(0);
        assert!((400..500).contains(&code), "{method} {target}: {code}");
    }
    let arrived = forge.state().received[before..].to_vec();
    assert!(
        arrived.is_empty(),
        "refused requests reached the forge: {arrived:?}"
    );
}

#[test]
fn bad_repositories_and_tokens_are_refused_with_clear_errors() {
    let forge = StandIn::start();
    app_repo(&forge, "octo/app");
    app_repo(&forge, "octo/other");
    let mut env = forge_env(&forge, TOKEN);
    env.push(("FIREPIT_GITHUB_ALLOW", "octo/app"));
    let d = Daemon::start_with("t72", &env);
    let fails = |args: &[&str]| {
        let out = d.run(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let missing = fails(&["new", "--image", "git", "--repo", "octo/missing"]);
    assert!(missing.contains("not allowed"), "{missing}");
    let other = fails(&["new", "--image", "git", "--repo", "octo/other"]);
    assert!(other.contains("octo/other is not allowed"), "{other}");
    let bad = fails(&["new", "--image", "git", "--repo", "not a repo"]);
    assert!(bad.contains("owner/name"), "{bad}");
    let branch = fails(&[
        "new",
        "--image",
        "git",
        "--repo",
        "octo/app",
        "--branch",
        "no-such-branch",
    ]);
    assert!(
        branch.contains("cloning octo/app into /workspace failed"),
        "{branch}"
    );
    // Nothing half-made is left behind.
    let ls = d.ok(&["ls"]);
    assert_eq!(ls.lines().count(), 1, "{ls}");

    // Without an allow list: a missing repository, and the rate limit waited out.
    // (A model is named so triage gets as far as the forge; it is never called.)
    let mut env2 = forge_env(&forge, TOKEN);
    env2.extend([
        ("FIREPIT_MODEL_URL", "http://127.0.0.1:9/v1"),
        ("FIREPIT_MODEL", "unused"),
    ]);
    let d2 = Daemon::start_with("t73", &env2);
    let missing = {
        let out = d2.run(&["new", "--image", "git", "--repo", "octo/missing"]);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(
        missing.contains("octo/missing: not found, or the GitHub token cannot see it"),
        "{missing}"
    );
    forge.state().rate_limit = Some((1, 1));
    let id = d2.new_session(&["--image", "git", "--repo", "octo/app"]);
    assert_eq!(d2.sh(&id, "cat /workspace/greet.py"), GREET);
    assert!(
        forge.state().rate_limit.is_none(),
        "the limited answer was seen"
    );
    forge.state().rate_limit = Some((1, 3600));
    let limited = {
        let out = d2.run(&["triage", "octo/app"]);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(
        limited.contains("rate limit") && limited.contains("3600"),
        "{limited}"
    );
    forge.state().rate_limit = None;
    drop(d2);

    // A token without the scope.
    let d3 = Daemon::start_with("t74", &forge_env(&forge, SCOPELESS));
    let out = d3.run(&["new", "--image", "git", "--repo", "octo/app"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("lacks the scope \"repo\""), "{err}");
    assert!(!err.contains(SCOPELESS) && !d3.log().contains(SCOPELESS));
}

#[test]
fn the_session_git_endpoint_clones_and_pushes_into_the_machine() {
    let d = Daemon::start("t75");
    let id = d.new_session(&["--image", "git"]);
    d.sh(
        &id,
        "git init -q -b main /workspace && cd /workspace && echo one > a.txt && git add a.txt \
         && git -c user.name=A -c user.email=a@b commit -q -m one",
    );
    let dir = tempfile::tempdir().unwrap();
    let port = d.url.rsplit(':').next().unwrap();
    let url = format!("http://firepit:{}@127.0.0.1:{port}/git/{id}", d.token);
    let host_git = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(dir.path())
            .env("GIT_TERMINAL_PROMPT", "0")
            .args(["-c", "user.name=P", "-c", "user.email=p@q"])
            .args(args)
            .output()
            .unwrap()
    };
    // Without the token: refused.
    let anon = host_git(&[
        "clone",
        "-q",
        &format!("http://127.0.0.1:{port}/git/{id}"),
        "anon",
    ]);
    assert!(!anon.status.success());
    let wrong = host_git(&[
        "clone",
        "-q",
        &format!("http://x:wrong@127.0.0.1:{port}/git/{id}"),
        "wrong",
    ]);
    assert!(!wrong.status.success());

    let clone = host_git(&["clone", "-q", &url, "work"]);
    assert!(
        clone.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&clone.stderr),
        d.log()
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("work/a.txt")).unwrap(),
        "one\n"
    );

    // A push lands in the machine's working tree.
    std::fs::write(dir.path().join("work/b.txt"), "two\n").unwrap();
    let work = dir.path().join("work");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .current_dir(&work)
            .env("GIT_TERMINAL_PROMPT", "0")
            .args(["-c", "user.name=P", "-c", "user.email=p@q"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["add", "b.txt"]);
    run(&["commit", "-q", "-m", "two"]);
    run(&["push", "-q", "origin", "main"]);
    assert_eq!(d.sh(&id, "cat /workspace/b.txt"), "two\n");
    assert_eq!(
        d.sh(&id, "git -C /workspace log -1 --format=%s").trim(),
        "two"
    );

    // A dirty working tree refuses the push, with git's reason, and loses nothing.
    d.sh(&id, "echo local > /workspace/a.txt");
    std::fs::write(work.join("b.txt"), "three\n").unwrap();
    run(&["commit", "-q", "-am", "three"]);
    let out = std::process::Command::new("git")
        .current_dir(&work)
        .env("GIT_TERMINAL_PROMPT", "0")
        .args(["push", "origin", "main"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rejected") || err.contains("dirty") || err.contains("not clean"),
        "{err}"
    );
    assert_eq!(d.sh(&id, "cat /workspace/a.txt"), "local\n");
    assert_eq!(d.sh(&id, "cat /workspace/b.txt"), "two\n");

    // A session without a repository says so.
    let plain = d.new_session(&["--image", "git"]);
    let none = host_git(&[
        "clone",
        "-q",
        &format!("http://x:{}@127.0.0.1:{port}/git/{plain}", d.token),
        "none",
    ]);
    assert!(!none.status.success());
}
