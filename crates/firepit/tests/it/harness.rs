//! Starts a daemon on port 0 in a temporary data dir and runs CLI commands
//! against it. Dropping the harness destroys every session it made, stops
//! the daemon and unmounts its disk pool (which a real install keeps mounted).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `firepit` binary under test.
pub const FIREPIT: &str = env!("CARGO_BIN_EXE_firepit");

pub use firepit_testkit::serve_on_thread;

/// The images dir the tests use.
pub fn images_dir() -> PathBuf {
    match std::env::var_os("FIREPIT_TEST_IMAGES") {
        Some(d) => PathBuf::from(d),
        None => panic!(
            "FIREPIT_TEST_IMAGES is not set: run the tests with `cargo xtask test` (as root), \
             which builds the test image and sets it"
        ),
    }
}

/// Environment variables that configure a model.
const MODEL_VARS: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "FIREPIT_MODEL_URL",
    "FIREPIT_MODEL_KEY",
    "FIREPIT_MODEL",
];

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    dir: tempfile::TempDir,
    instance: String,
    env: Vec<(String, String)>,
    /// The address `up` listens on (port 0 until a restart keeps the port).
    listen: String,
    /// Base URL of the API.
    pub url: String,
    /// The API token.
    pub token: String,
}

/// A WebSocket to the daemon.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Daemon {
    /// Opens a WebSocket to the daemon's `path` with the API token.
    pub async fn websocket(&self, path: &str) -> Ws {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}{path}", self.url.replacen("http", "ws", 1));
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", self.token).parse().unwrap(),
        );
        tokio_tungstenite::connect_async(req).await.unwrap().0
    }

    /// Starts a daemon whose default image is the test image. `instance` (1-6
    /// of a-z0-9, one per test) keeps its machines' cgroups, firewall and
    /// subnet apart from the other tests' daemons running at the same time.
    pub fn start(instance: &str) -> Daemon {
        Daemon::start_with(instance, &[])
    }

    /// [`Daemon::start`] with extra environment for the daemon (a model, say).
    /// Model settings of the environment the tests run in never reach it.
    pub fn start_with(instance: &str, env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("fp")
            .tempdir_in("/tmp")
            .unwrap();
        let mut d = Daemon {
            child: None,
            dir,
            instance: instance.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            url: String::new(),
            token: String::new(),
            listen: "127.0.0.1:0".into(),
        };
        d.spawn();
        d
    }

    /// The daemon's pid (for its memory in `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the daemon runs").id()
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) {
        let daemon_file = self.data_dir().join("daemon.json");
        let _ = std::fs::remove_file(&daemon_file);
        let log = std::fs::File::create(self.data_dir().join("daemon.log")).unwrap();
        let mut cmd = Command::new(FIREPIT);
        for var in MODEL_VARS {
            cmd.env_remove(var);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let child = cmd
            .args(["--data-dir"])
            .arg(self.data_dir())
            .args([
                "up",
                "--listen",
                &self.listen,
                "--default-image",
                "minimal",
                "--images-dir",
            ])
            .arg(images_dir())
            .args(["--instance", &self.instance])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&daemon_file) {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                self.url = v["url"].as_str().unwrap().to_owned();
                break;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "the daemon exited ({status}) before it was up:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not come up:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.token = std::fs::read_to_string(self.data_dir().join("token"))
            .unwrap()
            .trim()
            .to_owned();
    }

    /// What the daemon printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("daemon.log")).unwrap_or_default()
    }

    /// Every machine's guest log (the guest's own stderr: a panic, say), for
    /// failure messages.
    pub fn guest_logs(&self) -> String {
        let Ok(dir) = std::fs::read_dir(self.data_dir().join("machines")) else {
            return String::new();
        };
        let mut out = String::new();
        for entry in dir.flatten() {
            // In the machine's layer: in the disk pool, or (no disk limit) its state dir.
            let pool = self.data_dir().join("layers").join(entry.file_name());
            let log = std::fs::read_to_string(pool.join("guest.log"))
                .or_else(|_| std::fs::read_to_string(entry.path().join("guest.log")))
                .unwrap_or_default();
            if !log.trim().is_empty() {
                out.push_str(&format!(
                    "\nguest log of {}:\n{log}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
        out
    }

    /// Stops the daemon with `signal` and starts it again on the same data dir.
    pub fn restart(&mut self, signal: i32) {
        self.stop_daemon(signal);
        self.spawn();
    }

    /// [`Daemon::restart`] on the same port, so clients (a browser) reconnect
    /// to the same URL.
    pub fn restart_on_same_port(&mut self, signal: i32) {
        let port = self.url.rsplit(':').next().unwrap().trim_end_matches('/');
        self.listen = format!("127.0.0.1:{port}");
        self.restart(signal);
    }

    fn stop_daemon(&mut self, signal: i32) {
        if let Some(mut child) = self.child.take() {
            let signal = nix::sys::signal::Signal::try_from(signal).unwrap();
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal);
            let _ = child.wait();
        }
    }

    /// A CLI command against this daemon.
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new(FIREPIT);
        cmd.env("FIREPIT_DATA_DIR", self.data_dir())
            .env_remove("FIREPIT_URL")
            .env_remove("FIREPIT_TOKEN")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the CLI with `args`; returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cli().args(args).output().unwrap()
    }

    /// Runs the CLI with `args` and insists that it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "firepit {args:?} failed ({}):\nstdout: {}\nstderr: {}\ndaemon log:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log(),
            self.guest_logs()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Makes a session; returns its id.
    pub fn new_session(&self, extra: &[&str]) -> String {
        let mut args = vec!["new"];
        args.extend_from_slice(extra);
        self.ok(&args).trim().to_owned()
    }

    /// Runs a shell line in a session; returns stdout, insisting on success.
    pub fn sh(&self, id: &str, line: &str) -> String {
        self.ok(&["exec", id, "--", "sh", "-c", line])
    }

    /// GETs an API path with the token (from a test without a runtime);
    /// returns the JSON answer.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            self.http()
                .get(format!("{}{path}", self.url))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    }

    /// An HTTP client with the token.
    pub fn http(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "authorization",
            format!("Bearer {}", self.token).parse().unwrap(),
        );
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            if let Ok(out) = self.cli().arg("ls").output() {
                let text = String::from_utf8_lossy(&out.stdout);
                for id in text
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_whitespace().next())
                {
                    let _ = self.cli().args(["rm", id]).output();
                }
            }
            self.stop_daemon(15);
        }
        let pool = self.data_dir().join("layers");
        if std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(' ').nth(4) == pool.to_str())
        {
            let _ = Command::new("umount").arg(&pool).status();
        }
    }
}
