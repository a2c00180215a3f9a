//! `firepit-bench-browser` (`cargo xtask bench-browser`): the agent's browser.
//!
//! One machine from the `browser` image serves a typical app page (a todo
//! app: navigation, a form, a list of 150 items with buttons, a table) with
//! `python3 -m http.server`. Measured through the daemon's own `Browser`
//! (Chromium inside the machine, CDP through the netns dialer):
//!
//! - cold: from nothing running to a usable page (Chromium started, page
//!   attached, the app opened and loaded); the first start and later ones
//!   (Chromium's profile and the page cache of the machine warm);
//! - warm: a browser that runs, reused: a command round trip, and opening
//!   the app page again;
//! - the snapshot of the app page: time and size.
//!
//! Needs root and `FIREPIT_TEST_IMAGES` with a `browser` image (set and built
//! by `cargo xtask bench-browser`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use firepit_daemon::App;
use firepit_wire::api::{CreateSession, Limits, NetworkMode};
use firepit_wire::guest::{Command, RestartPolicy, ServiceSpec};

const COLD_RUNS: usize = 5;
const WARM_RUNS: usize = 30;
const SNAPSHOT_RUNS: usize = 30;

fn main() -> ExitCode {
    firepit_bench::main_async("firepit-bench-browser", run)
}

/// A typical app page.
fn app_page() -> String {
    let mut items = String::new();
    for i in 0..150 {
        items.push_str(&format!(
            "<li class=\"todo\"><input type=\"checkbox\" id=\"t{i}\"{}><label for=\"t{i}\">Task number {i}: write the thing and test it</label> <button class=\"edit\">Edit</button> <button class=\"del\">Delete</button></li>\n",
            if i % 3 == 0 { " checked" } else { "" }
        ));
    }
    let mut rows = String::new();
    for i in 0..30 {
        rows.push_str(&format!("<tr><td>user{i}@example.test</td><td>{}</td><td><a href=\"/users/{i}\">Open</a></td></tr>\n", i * 7));
    }
    format!(
        r#"<!doctype html><html><head><title>Todos</title><style>body{{font-family:sans-serif}} .hidden{{display:none}}</style></head>
<body><header><nav><a href="/">Home</a> <a href="/todos">Todos</a> <a href="/users">Users</a> <a href="/settings">Settings</a></nav></header>
<main><h1>Todos</h1>
<form id="new"><label>New todo <input name="title" placeholder="What needs doing?"></label>
<select name="list"><option>Inbox</option><option>Work</option><option>Home</option></select>
<button type="submit">Add</button></form>
<p>150 items, 50 done.</p><ul>{items}</ul>
<h2>Users</h2><table><tr><th>Email</th><th>Points</th><th></th></tr>{rows}</table>
<div class="hidden">hidden things</div></main>
<footer><p>Made with firepit</p></footer>
<script>document.getElementById('new').addEventListener('submit', e => e.preventDefault());</script>
</body></html>"#
    )
}

fn pct(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run() -> Result<()> {
    let images = std::env::var_os("FIREPIT_TEST_IMAGES")
        .map(PathBuf::from)
        .context("FIREPIT_TEST_IMAGES is not set; run `cargo xtask bench-browser`")?;
    let image = std::env::var("FIREPIT_TEST_BROWSER_IMAGE").unwrap_or_else(|_| "browser".into());
    let (_dir, app) = firepit_bench::throwaway_daemon(images, &image, "bb").await?;
    let session = app
        .create_session(CreateSession {
            image: Some(image),
            limits: Limits {
                memory_bytes: Some(2 << 30),
                ..Limits::default()
            },
            network: NetworkMode::None,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!(firepit_daemon::error::chain(&e)))?;
    let id = session.id.clone();
    let result = measure(&app, &id).await;
    let _ = app.destroy_session(&id).await;
    result
}

async fn measure(app: &App, id: &str) -> Result<()> {
    let guest = app
        .guest(id)
        .await
        .map_err(|e| anyhow::anyhow!(firepit_daemon::error::chain(&e)))?;
    let page = app_page();
    guest.mkdir("/root/app", true).await?;
    guest
        .write_file_all(
            "/root/app/index.html",
            page.clone().into_bytes().into(),
            Default::default(),
        )
        .await?;
    guest
        .service_start(ServiceSpec {
            name: "web".into(),
            command: Command::Shell("python3 -m http.server 8000 --bind 127.0.0.1".into()),
            env: Vec::new(),
            cwd: Some("/root/app".into()),
            restart: RestartPolicy::Never,
        })
        .await?;
    // The server is up once it answers.
    let probe = firepit_guest_client::ExecRequest::shell(
        "for i in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:8000/ && exit 0; sleep 0.05; done; exit 1",
    );
    guest.exec(probe).await?.output(4096).await?;
    let url = "http://127.0.0.1:8000/";
    let limit = Duration::from_secs(30);
    let browser = app.browser(id, &guest);

    let mut cold_launch = Vec::new();
    let mut cold_usable = Vec::new();
    for _ in 0..COLD_RUNS {
        let t = Instant::now();
        let (p, _) = browser.page().await?;
        cold_launch.push(ms(t.elapsed()));
        p.open(url, limit).await?;
        cold_usable.push(ms(t.elapsed()));
        browser.stop().await?;
    }

    let mut warm_rtt = Vec::new();
    let mut warm_open = Vec::new();
    browser.page().await?;
    for _ in 0..WARM_RUNS {
        let t = Instant::now();
        let (p, _) = browser.page().await?;
        p.eval("1 + 1", limit).await?;
        warm_rtt.push(ms(t.elapsed()));
        let t = Instant::now();
        let (p, _) = browser.page().await?;
        p.open(url, limit).await?;
        warm_open.push(ms(t.elapsed()));
    }

    let (p, _) = browser.page().await?;
    let mut snap_ms = Vec::new();
    let mut snap_bytes = 0;
    let mut snap = String::new();
    for _ in 0..SNAPSHOT_RUNS {
        let t = Instant::now();
        snap = p.snapshot(60_000).await?;
        snap_ms.push(ms(t.elapsed()));
        snap_bytes = snap.len();
    }
    let controls = snap.matches("[ref=").count();
    let _ = browser.stop().await;

    println!(
        "browser benchmark: Chromium in a `browser` machine, driven over CDP through the netns dialer"
    );
    println!(
        "app page: {} bytes of HTML, {} controls with refs",
        page.len(),
        controls
    );
    println!();
    println!("| what | p50 | p95 | first |");
    println!("|---|---|---|---|");
    let first = cold_usable[0];
    let first_launch = cold_launch[0];
    println!(
        "| cold: Chromium started and attached | {:.0} ms | {:.0} ms | {first_launch:.0} ms |",
        pct(&mut cold_launch.clone(), 50.0),
        pct(&mut cold_launch, 95.0)
    );
    println!(
        "| cold: … and the app page loaded (usable) | {:.0} ms | {:.0} ms | {first:.0} ms |",
        pct(&mut cold_usable.clone(), 50.0),
        pct(&mut cold_usable, 95.0)
    );
    println!(
        "| warm: reused browser, command round trip | {:.2} ms | {:.2} ms | |",
        pct(&mut warm_rtt.clone(), 50.0),
        pct(&mut warm_rtt, 95.0)
    );
    println!(
        "| warm: reused browser, app page opened | {:.1} ms | {:.1} ms | |",
        pct(&mut warm_open.clone(), 50.0),
        pct(&mut warm_open, 95.0)
    );
    println!(
        "| snapshot of the app page ({snap_bytes} bytes, ≈{} tokens) | {:.1} ms | {:.1} ms | |",
        snap_bytes / 4,
        pct(&mut snap_ms.clone(), 50.0),
        pct(&mut snap_ms, 95.0)
    );
    Ok(())
}
