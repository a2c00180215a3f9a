//! Starting Chromium inside a machine and finding its page.
//!
//! Chromium runs as the guest service `chromium` (so its output is in the
//! service log like any other), headless, with its DevTools endpoint on the
//! machine's 127.0.0.1 only. The daemon reaches that port through a stream
//! the caller dials inside the machine ([`Dial`]; the daemon's is the
//! machine backend's `dial`): nothing is forwarded or published.
//!
//! Chromium's own sandbox is off (`--no-sandbox`): the machine is the
//! sandbox (its own user, pid, mount and network namespaces, seccomp, no
//! capabilities outside), Chromium's sandbox needs namespaces or a setuid
//! helper that the machine's seccomp filter and user namespace do not
//! offer, and the page's code can do nothing Chromium's sandbox would stop
//! that the agent could not already do in the machine's root shell.

use std::sync::Arc;
use std::time::Duration;

use firepit_guest_client::{ExecRequest, GuestClient};
use firepit_wire::guest::{Command, RestartPolicy, ServiceSpec, ServiceState};
use futures::future::BoxFuture;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::cdp::Cdp;
use crate::page::Page;
use crate::{Error, http};

/// Dials a TCP port on the machine's 127.0.0.1.
pub type Dial = Arc<dyn Fn(u16) -> BoxFuture<'static, std::io::Result<TcpStream>> + Send + Sync>;

/// The DevTools port inside machines.
pub const DEVTOOLS_PORT: u16 = 9223;
/// The guest service Chromium runs as.
pub const SERVICE: &str = "chromium";
/// How long Chromium may take to answer on its DevTools port.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Chromium's command line.
pub fn argv(port: u16) -> Vec<String> {
    [
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-sync",
        "--disable-component-update",
        "--disable-breakpad",
        "--metrics-recording-only",
        "--mute-audio",
        "--hide-scrollbars",
        "--window-size=1280,800",
        "--user-data-dir=/tmp/firepit-chromium",
        "--remote-debugging-address=127.0.0.1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([
        format!("--remote-debugging-port={port}"),
        "about:blank".to_owned(),
    ])
    .collect()
}

/// Starts Chromium in one machine and connects to its page.
#[derive(Clone)]
pub struct Launcher {
    guest: GuestClient,
    dial: Dial,
    port: u16,
}

impl Launcher {
    /// A launcher acting through `guest`, reaching the machine's ports with `dial`.
    pub fn new(guest: GuestClient, dial: Dial) -> Launcher {
        Launcher {
            guest,
            dial,
            port: DEVTOOLS_PORT,
        }
    }

    /// Connects to the Chromium that runs (a daemon restart keeps it), or
    /// starts one.
    pub async fn launch(&self) -> Result<Page, Error> {
        if let Ok(page) = self.connect().await {
            return Ok(page);
        }
        let which = self
            .guest
            .exec(ExecRequest::shell(
                "command -v chromium || command -v chromium-browser".to_owned(),
            ))
            .await?
            .output(4096)
            .await?;
        let path = String::from_utf8_lossy(which.stdout.head())
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        if path.is_empty() {
            return Err(Error::Launch(
                "this machine's image has no Chromium; make the session from the `browser` or `default` image (firepit new --image browser)".into(),
            ));
        }
        let _ = self.guest.service_stop(SERVICE).await;
        let mut command = vec![path];
        command.extend(argv(self.port));
        self.guest
            .service_start(ServiceSpec {
                name: SERVICE.to_owned(),
                command: Command::Argv(command),
                env: vec![("HOME".into(), "/tmp/firepit-chromium".into())],
                cwd: Some("/tmp".into()),
                restart: RestartPolicy::Never,
            })
            .await?;
        let deadline = tokio::time::Instant::now() + START_LIMIT;
        loop {
            match self.connect().await {
                Ok(page) => return Ok(page),
                Err(e) => {
                    let services = self.guest.service_list().await?;
                    let exited = services
                        .iter()
                        .find(|s| s.name == SERVICE)
                        .is_none_or(|s| s.state != ServiceState::Running);
                    if exited || tokio::time::Instant::now() >= deadline {
                        let log = self.log_tail().await;
                        let why = if exited {
                            "it exited"
                        } else {
                            "it did not answer within 30s"
                        };
                        return Err(Error::Launch(format!("{why} ({e}); its log ends:\n{log}")));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn log_tail(&self) -> String {
        let Ok(logs) = self.guest.service_logs(SERVICE, Some(2000), false).await else {
            return String::new();
        };
        let out = logs.read_tail(2000).await.unwrap_or_default();
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Finds the page target (making one if there is none) and attaches to it.
    async fn connect(&self) -> Result<Page, Error> {
        attach(&self.dial, self.port).await
    }

    /// Stops Chromium.
    pub async fn stop(&self) -> Result<(), Error> {
        self.guest.service_stop(SERVICE).await?;
        Ok(())
    }
}

/// Attaches to the page of a Chromium whose DevTools port `port` `dial` reaches
/// (making a page if it has none).
pub async fn attach(dial: &Dial, port: u16) -> Result<Page, Error> {
    let dial = || async {
        dial(port)
            .await
            .map_err(|source| Error::Dial { port, source })
    };
    {
        let list = http::request(dial().await?, "GET", "/json/list").await?;
        let targets: Value = serde_json::from_str(&list)
            .map_err(|e| Error::DevTools(format!("/json/list is not JSON: {e}")))?;
        let mut ws = targets
            .as_array()
            .and_then(|a| a.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .map(str::to_owned);
        if ws.is_none() {
            let made = http::request(dial().await?, "PUT", "/json/new?about:blank").await?;
            let t: Value = serde_json::from_str(&made)
                .map_err(|e| Error::DevTools(format!("/json/new is not JSON: {e}")))?;
            ws = t["webSocketDebuggerUrl"].as_str().map(str::to_owned);
        }
        let ws =
            ws.ok_or_else(|| Error::DevTools("no page target and none could be made".into()))?;
        let cdp = Cdp::connect(dial().await?, &ws).await?;
        Page::attach(cdp).await
    }
}
