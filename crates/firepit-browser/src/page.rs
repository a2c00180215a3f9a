//! One page of the browser, driven over a [`Cdp`] connection: navigation,
//! the snapshot, actions, JavaScript, what the page reported (console,
//! uncaught exceptions, failed requests, dialogs) and screenshots.
//!
//! A collector task reads the connection's events into bounded buffers and
//! republishes what others watch (the daemon's problem watcher, the live
//! view) as [`Observation`]s. It hears the page from before its first
//! navigation on, across navigations and reloads, and the targets the page
//! starts (dedicated and shared workers, out-of-process frames), which
//! Chromium holds at their start (`waitForDebuggerOnStart`) until the
//! collector has enabled their reports, so nothing they raise early is lost.
//! Popups the page opens (`window.open`, `target=_blank`) are not its
//! children: the page's connection discovers targets and attaches each page
//! whose opener is the page or one of its popups as Chromium announces it
//! (not held at its start: what one raises before that can be missed); its
//! reports join the page's, marked `[popup <url>]`, after a
//! [`Report::Popup`] that says it opened.
//!
//! The agent reads errors through one cursor ([`Page::undelivered_errors`]):
//! whatever the page raised since the agent last heard, whether during a
//! tool call or between calls, is handed over exactly once. Dialogs are dismissed as they open, so a page
//! that raises alerts forever cannot block the browser; every wait and every
//! command has a limit.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use crate::cdp::{Cdp, CdpEvent};
use crate::{Error, js};

/// Default limit of one CDP command.
const COMMAND: Duration = Duration::from_secs(10);
/// Most entries kept per kind between looks.
const KEEP: usize = 200;
/// Dialogs one page may open before its dialog functions are turned off.
const MAX_DIALOGS: u64 = 20;
/// Longest text kept of one entry.
const ENTRY_TEXT: usize = 2000;

/// What the page reported, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Report {
    /// A console message.
    Console {
        /// `log`, `info`, `warning`, `error`, `debug`, ….
        level: String,
        /// The text.
        text: String,
    },
    /// An uncaught exception (or unhandled rejection).
    Exception {
        /// Its message.
        text: String,
        /// Its stack, where the page gave one.
        stack: String,
    },
    /// A request that failed or answered 4xx/5xx.
    Request {
        /// Method.
        method: String,
        /// URL.
        url: String,
        /// The status, or 0 when it failed without one.
        status: u16,
        /// The network error, when it failed without a status.
        error: String,
    },
    /// A dialog the browser dismissed.
    Dialog {
        /// `alert`, `confirm`, `prompt` or `beforeunload`.
        kind: String,
        /// Its message.
        message: String,
    },
    /// The page opened a popup (`window.open`, a `target=_blank` link):
    /// its reports are collected with the page's, its exceptions and
    /// console messages marked `[popup <url>]`.
    Popup {
        /// Its URL when it opened (`about:blank` until it loads one).
        url: String,
    },
}

impl Report {
    /// One line for the model.
    pub fn line(&self) -> String {
        match self {
            Report::Console { level, text } => format!("console.{level}: {text}"),
            Report::Exception { text, stack } if stack.is_empty() => {
                format!("uncaught exception: {text}")
            }
            Report::Exception { text, stack } => format!("uncaught exception: {text}\n{stack}"),
            Report::Request {
                method,
                url,
                status: 0,
                error,
                ..
            } => format!("request failed: {method} {url}: {error}"),
            Report::Request {
                method,
                url,
                status,
                ..
            } => format!("request answered {status}: {method} {url}"),
            Report::Dialog { kind, message } => format!("{kind} dialog dismissed: {message}"),
            Report::Popup { url } => format!(
                "the page opened a popup: {url} (its errors are reported with the page's; the browser tools drive the first page)"
            ),
        }
    }

    /// Whether the agent is told of it with the page's errors
    /// ([`Page::undelivered_errors`]): an error, or a popup that opened.
    pub fn is_news(&self) -> bool {
        self.is_error() || matches!(self, Report::Popup { .. })
    }

    /// Whether it is an error worth the agent's attention.
    pub fn is_error(&self) -> bool {
        match self {
            Report::Console { level, .. } => level == "error" || level == "assert",
            Report::Exception { .. } => true,
            Report::Request { status, .. } => *status == 0 || *status >= 500,
            Report::Dialog { .. } | Report::Popup { .. } => false,
        }
    }
}

/// A screencast frame.
#[derive(Debug, Clone, Serialize)]
pub struct Frame {
    /// JPEG, base64.
    pub data: String,
    /// Width in CSS pixels.
    pub width: u32,
    /// Height in CSS pixels.
    pub height: u32,
    /// The page's URL when it was taken.
    pub url: String,
}

/// What others may watch: reports, page changes, frames.
#[derive(Debug, Clone)]
pub enum Observation {
    /// The page reported something.
    Report(Report),
    /// The page changed.
    Page {
        /// Its URL.
        url: String,
        /// Its title.
        title: String,
    },
    /// A screencast frame.
    Frame(Arc<Frame>),
}

#[derive(Default)]
struct State {
    seq: u64,
    reports: VecDeque<(u64, Report)>,
    dropped: u64,
    /// Reports the agent has seen up to (`browser_console`).
    looked: u64,
    /// Errors handed to the agent up to ([`Page::undelivered_errors`]).
    delivered: u64,
    url: String,
    title: String,
    /// Requests in flight: id → (method, url).
    inflight: HashMap<String, (String, String)>,
    main_frame: Option<String>,
    /// Status of the last main-frame document.
    status: Option<u16>,
    loads: u64,
    dialogs: u64,
    /// The page's target and the popups' (whose popups are collected too).
    openers: Vec<String>,
    /// Attached popups, by session.
    popups: HashMap<String, Popup>,
    /// Popups asked to attach, by target.
    attaching: Vec<String>,
}

impl State {
    fn push(&mut self, r: Report) {
        self.seq += 1;
        if self.reports.len() >= KEEP {
            self.reports.pop_front();
            self.dropped += 1;
        }
        self.reports.push_back((self.seq, r));
    }
}

/// The agent's browser page. Cheap to clone.
#[derive(Clone)]
pub struct Page {
    cdp: Cdp,
    state: Arc<Mutex<State>>,
    observations: broadcast::Sender<Observation>,
    loads: watch::Receiver<u64>,
    screencasts: Arc<AtomicUsize>,
}

fn cut(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_owned();
    }
    let mut e = n;
    while !s.is_char_boundary(e) {
        e -= 1;
    }
    format!("{}…", &s[..e])
}

/// Text of a console call's arguments.
fn console_text(args: &Value) -> String {
    let parts: Vec<String> = args
        .as_array()
        .map(|a| {
            a.iter()
                .map(|o| match o.get("value") {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) if !v.is_null() => v.to_string(),
                    _ => o
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or_else(|| o.get("type").and_then(Value::as_str).unwrap_or(""))
                        .to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    cut(&parts.join(" "), ENTRY_TEXT)
}

impl Page {
    /// Takes over a page's connection: enables the domains it needs and
    /// starts the collector.
    pub async fn attach(cdp: Cdp) -> Result<Page, Error> {
        let state = Arc::new(Mutex::new(State::default()));
        let (observations, _) = broadcast::channel(256);
        let (loads_tx, loads) = watch::channel(0);
        let page = Page {
            cdp: cdp.clone(),
            state: state.clone(),
            observations: observations.clone(),
            loads,
            screencasts: Arc::new(AtomicUsize::new(0)),
        };
        let events = cdp.events();
        tokio::spawn(collect(page.clone(), events, loads_tx));
        for m in [
            "Page.enable",
            "Runtime.enable",
            "Network.enable",
            "Inspector.enable",
        ] {
            cdp.call(m, json!({}), COMMAND).await?;
        }
        // Workers and out-of-process frames: attached in flat mode, held at
        // their start until the collector has enabled their reports.
        cdp.call("Target.setAutoAttach", auto_attach(), COMMAND)
            .await?;
        // Popups are pages of their own, not the page's children: found as
        // they are made (`Target.targetCreated` naming an opener we know)
        // and attached.
        let me = cdp.call("Target.getTargetInfo", json!({}), COMMAND).await?;
        if let Some(id) = me["targetInfo"]["targetId"].as_str() {
            state
                .lock()
                .expect("page state")
                .openers
                .push(id.to_owned());
        }
        cdp.call(
            "Target.setDiscoverTargets",
            json!({"discover": true}),
            COMMAND,
        )
        .await?;
        cdp.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": js::DIALOGS}),
            COMMAND,
        )
        .await?;
        cdp.call(
            "Runtime.evaluate",
            json!({"expression": js::DIALOGS}),
            COMMAND,
        )
        .await?;
        let tree = cdp.call("Page.getFrameTree", json!({}), COMMAND).await?;
        {
            let mut st = state.lock().expect("page state");
            st.main_frame = tree["frameTree"]["frame"]["id"].as_str().map(str::to_owned);
            st.url = tree["frameTree"]["frame"]["url"]
                .as_str()
                .unwrap_or("")
                .to_owned();
        }
        Ok(page)
    }

    /// Whether the connection to the page is gone.
    pub fn is_closed(&self) -> bool {
        self.cdp.is_closed()
    }

    /// Completes when the page's connection is gone, with the reason.
    pub async fn closed(&self) -> String {
        self.cdp.closed().await
    }

    /// Reports, page changes and frames from now on.
    pub fn observe(&self) -> broadcast::Receiver<Observation> {
        self.observations.subscribe()
    }

    /// The current URL and title.
    pub fn location(&self) -> (String, String) {
        let st = self.state.lock().expect("page state");
        (st.url.clone(), st.title.clone())
    }

    /// The errors the agent has not been told of yet, oldest first; from now
    /// on they count as told. Every report is kept in order before it is
    /// published, so an error raised before this call is in its answer or in
    /// a later one, never in none.
    pub fn undelivered_errors(&self) -> Vec<Report> {
        let mut st = self.state.lock().expect("page state");
        let delivered = st.delivered;
        st.delivered = st.seq;
        st.reports
            .iter()
            .filter(|(s, r)| *s > delivered && r.is_news())
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Whether the page raised errors the agent has not been told of.
    pub fn has_undelivered_errors(&self) -> bool {
        let st = self.state.lock().expect("page state");
        st.reports
            .iter()
            .any(|(s, r)| *s > st.delivered && r.is_news())
    }

    /// Everything reported since the last call, and how many were dropped
    /// for lack of room. Errors among them count as told
    /// ([`Page::undelivered_errors`]).
    pub fn take_reports(&self) -> (Vec<Report>, u64) {
        let mut st = self.state.lock().expect("page state");
        let looked = st.looked;
        st.delivered = st.delivered.max(st.seq);
        let out: Vec<Report> = st
            .reports
            .iter()
            .filter(|(s, _)| *s > looked)
            .map(|(_, r)| r.clone())
            .collect();
        st.looked = st.seq;
        let dropped = std::mem::take(&mut st.dropped);
        (out, dropped)
    }

    async fn call(&self, method: &str, params: Value) -> Result<Value, Error> {
        self.cdp.call(method, params, COMMAND).await
    }

    /// Evaluates `expression` and returns its value as JSON. Promises are
    /// awaited; a script that runs longer than `timeout` is terminated.
    pub async fn eval(&self, expression: &str, timeout: Duration) -> Result<Value, Error> {
        let params = json!({
            "expression": expression,
            "returnByValue": true,
            "awaitPromise": true,
            "userGesture": true,
            "timeout": timeout.as_millis() as u64,
        });
        let terminated = || {
            Error::Page(format!(
                "the script did not finish within {}s and was terminated",
                timeout.as_secs()
            ))
        };
        let r = match self
            .cdp
            .call("Runtime.evaluate", params, timeout + Duration::from_secs(2))
            .await
        {
            // Chromium ends a script past `timeout` and answers with an internal error.
            Err(Error::Protocol { message, .. }) if message.starts_with("Internal error") => {
                return Err(terminated());
            }
            Err(Error::Timeout { .. }) => {
                // A script in an endless loop: stop it so the page answers again.
                let _ = self
                    .cdp
                    .call("Runtime.terminateExecution", json!({}), COMMAND)
                    .await;
                return Err(terminated());
            }
            r => r?,
        };
        if let Some(ex) = r.get("exceptionDetails") {
            let msg = ex["exception"]["description"]
                .as_str()
                .or_else(|| ex["exception"]["value"].as_str())
                .or_else(|| ex["text"].as_str())
                .unwrap_or("the script threw");
            let msg = msg.strip_prefix("Error: ").unwrap_or(msg);
            let first = msg.lines().next().unwrap_or(msg);
            return Err(Error::Page(cut(first, ENTRY_TEXT)));
        }
        let res = &r["result"];
        Ok(match res.get("value") {
            Some(v) => v.clone(),
            None => match res["type"].as_str() {
                Some("undefined") => Value::Null,
                _ => Value::String(res["description"].as_str().unwrap_or("").to_owned()),
            },
        })
    }

    /// Calls one of [`js`]'s functions with JSON arguments.
    async fn run_js(&self, func: &str, args: &[Value]) -> Result<Value, Error> {
        let args: Vec<String> = args.iter().map(Value::to_string).collect();
        let expr = format!("{}\n({})({})", js::FIND, func.trim(), args.join(", "));
        self.eval(&expr, Duration::from_secs(10)).await
    }

    /// Opens `url` and waits up to `timeout` for it to load. A page that does
    /// not finish is stopped where it got to, and the answer says so.
    pub async fn open(&self, url: &str, timeout: Duration) -> Result<String, Error> {
        let loads = *self.loads.borrow();
        let r = self.call("Page.navigate", json!({"url": url})).await?;
        if let Some(e) = r.get("errorText").and_then(Value::as_str) {
            return Err(Error::Page(format!("could not open {url}: {e}")));
        }
        if r.get("loaderId").is_none() {
            return Ok(format!("went to {url} (same document)"));
        }
        self.wait_load(loads, timeout).await
    }

    async fn wait_load(&self, before: u64, timeout: Duration) -> Result<String, Error> {
        let mut rx = self.loads.clone();
        let waited = tokio::time::timeout(timeout, async {
            rx.wait_for(|n| *n > before).await.map(|_| ())
        })
        .await;
        let note = match waited {
            Ok(Ok(())) => String::new(),
            Ok(Err(_)) => return Err(Error::Closed(self.cdp.closed().await)),
            Err(_) => {
                let _ = self.call("Page.stopLoading", json!({})).await;
                format!(
                    " — it did not finish loading within {}s and was stopped there",
                    timeout.as_secs()
                )
            }
        };
        let title = self
            .eval("document.title", Duration::from_secs(5))
            .await
            .ok();
        let (url, status) = {
            let mut st = self.state.lock().expect("page state");
            if let Some(Value::String(t)) = &title {
                st.title = t.clone();
            }
            (st.url.clone(), st.status)
        };
        let title = title
            .and_then(|t| t.as_str().map(str::to_owned))
            .unwrap_or_default();
        let status = status.map(|s| format!(" (HTTP {s})")).unwrap_or_default();
        Ok(format!("at {url}{status}, title {title:?}{note}"))
    }

    /// Goes back in history.
    pub async fn back(&self, timeout: Duration) -> Result<String, Error> {
        let h = self.call("Page.getNavigationHistory", json!({})).await?;
        let i = h["currentIndex"].as_i64().unwrap_or(0);
        if i <= 0 {
            return Err(Error::Page("there is no page to go back to".into()));
        }
        let id = h["entries"][(i - 1) as usize]["id"].clone();
        let loads = *self.loads.borrow();
        self.call("Page.navigateToHistoryEntry", json!({"entryId": id}))
            .await?;
        self.wait_load(loads, timeout).await
    }

    /// Reloads the page.
    pub async fn reload(&self, timeout: Duration) -> Result<String, Error> {
        let loads = *self.loads.borrow();
        self.call("Page.reload", json!({})).await?;
        self.wait_load(loads, timeout).await
    }

    /// Waits until the page shows `text`, has an element matching
    /// `selector`, or (neither given) has had no request in flight for half
    /// a second.
    pub async fn wait_for(
        &self,
        text: Option<&str>,
        selector: Option<&str>,
        timeout: Duration,
    ) -> Result<String, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut idle_since: Option<tokio::time::Instant> = None;
        loop {
            let done = match (text, selector) {
                (Some(t), _) => {
                    let e = format!(
                        "!!(document.body && document.body.innerText.includes({}))",
                        json!(t)
                    );
                    self.eval(&e, Duration::from_secs(5)).await? == Value::Bool(true)
                }
                (None, Some(s)) => {
                    let e = format!("!!document.querySelector({})", json!(s));
                    self.eval(&e, Duration::from_secs(5)).await? == Value::Bool(true)
                }
                (None, None) => {
                    let busy = !self.state.lock().expect("page state").inflight.is_empty();
                    let now = tokio::time::Instant::now();
                    if busy {
                        idle_since = None;
                        false
                    } else {
                        let since = *idle_since.get_or_insert(now);
                        now - since >= Duration::from_millis(500)
                    }
                }
            };
            if done {
                return Ok(match (text, selector) {
                    (Some(t), _) => format!("the page shows {t:?}"),
                    (None, Some(s)) => format!("an element matches {s:?}"),
                    (None, None) => "the network is idle".to_owned(),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                let what = match (text, selector) {
                    (Some(t), _) => format!("the text {t:?} did not appear"),
                    (None, Some(s)) => format!("no element matched {s:?}"),
                    (None, None) => {
                        let st = self.state.lock().expect("page state");
                        let some: Vec<String> = st
                            .inflight
                            .values()
                            .take(5)
                            .map(|(m, u)| format!("{m} {}", cut(u, 100)))
                            .collect();
                        format!("requests were still in flight: {}", some.join(", "))
                    }
                };
                return Err(Error::Page(format!("{what} within {}s", timeout.as_secs())));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The page as an outline with element refs, at most `max_chars` long.
    pub async fn snapshot(&self, max_chars: usize) -> Result<String, Error> {
        let expr = format!("({})({}, {})", js::SNAPSHOT.trim(), max_chars, 20_000);
        let v = self.eval(&expr, Duration::from_secs(20)).await?;
        let text = v["text"].as_str().unwrap_or("");
        let title = v["title"].as_str().unwrap_or("");
        let url = v["url"].as_str().unwrap_or("");
        let mut out = format!("page: {}\ntitle: {title:?}\n{text}", cut(url, 300));
        if text.is_empty() {
            out.push_str("(the page shows nothing)");
        }
        if v["truncated"] == Value::Bool(true) {
            out.push_str("\n[the page is larger: the outline stops here; scroll or use browser_eval to look further]");
        }
        Ok(out)
    }

    /// Clicks an element (by snapshot ref or CSS selector) at its centre.
    pub async fn click(
        &self,
        r#ref: Option<&str>,
        selector: Option<&str>,
    ) -> Result<String, Error> {
        let p = self
            .run_js(js::POINT, &[json!(r#ref), json!(selector)])
            .await?;
        if let Some(c) = p["covered"].as_str() {
            return Err(Error::Page(format!(
                "{} is covered by {c}; close or scroll away what covers it first",
                p["what"].as_str().unwrap_or("the element")
            )));
        }
        let (x, y) = (
            p["x"].as_f64().unwrap_or(0.0),
            p["y"].as_f64().unwrap_or(0.0),
        );
        for (kind, buttons) in [("mouseMoved", 0), ("mousePressed", 1), ("mouseReleased", 0)] {
            let mut params =
                json!({"type": kind, "x": x, "y": y, "button": "left", "buttons": buttons});
            if kind != "mouseMoved" {
                params["clickCount"] = json!(1);
            }
            self.call("Input.dispatchMouseEvent", params).await?;
        }
        Ok(format!("clicked {}", p["what"].as_str().unwrap_or("it")))
    }

    /// Types `text` into an element (cleared first with `clear`), then
    /// presses Enter with `submit`.
    pub async fn type_text(
        &self,
        r#ref: Option<&str>,
        selector: Option<&str>,
        text: &str,
        clear: bool,
        submit: bool,
    ) -> Result<String, Error> {
        let what = self
            .run_js(js::FOCUS, &[json!(r#ref), json!(selector), json!(clear)])
            .await?;
        self.call("Input.insertText", json!({"text": text})).await?;
        if submit {
            self.press("Enter").await?;
        }
        Ok(format!(
            "typed {} characters into {}",
            text.chars().count(),
            what.as_str().unwrap_or("it")
        ))
    }

    /// Chooses an option of a `<select>` by value or text.
    pub async fn select(
        &self,
        r#ref: Option<&str>,
        selector: Option<&str>,
        value: &str,
    ) -> Result<String, Error> {
        let chosen = self
            .run_js(js::SELECT, &[json!(r#ref), json!(selector), json!(value)])
            .await?;
        Ok(format!("selected {}", chosen))
    }

    /// Presses a key or a chord (`Enter`, `Tab`, `Escape`, `ArrowDown`,
    /// `a`, `Control+a`, `Shift+Tab`, …) in the focused element.
    pub async fn press(&self, keys: &str) -> Result<String, Error> {
        let k = parse_key(keys).map_err(Error::Page)?;
        let mut down = json!({
            "type": if k.text.is_empty() { "rawKeyDown" } else { "keyDown" },
            "key": k.key, "code": k.code, "windowsVirtualKeyCode": k.code_num,
            "modifiers": k.modifiers,
        });
        if !k.text.is_empty() {
            down["text"] = json!(k.text);
        }
        self.call("Input.dispatchKeyEvent", down).await?;
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": k.key, "code": k.code, "windowsVirtualKeyCode": k.code_num, "modifiers": k.modifiers}),
        )
        .await?;
        Ok(format!("pressed {keys}"))
    }

    /// Scrolls an element into view, or the page by `(dx, dy)` pixels.
    pub async fn scroll(
        &self,
        r#ref: Option<&str>,
        selector: Option<&str>,
        dx: f64,
        dy: f64,
    ) -> Result<String, Error> {
        let v = self
            .run_js(
                js::SCROLL,
                &[json!(r#ref), json!(selector), json!(dx), json!(dy)],
            )
            .await?;
        Ok(v.as_str().unwrap_or("scrolled").to_owned())
    }

    /// A PNG of the viewport, or of the whole page (at most 8000 px tall).
    pub async fn screenshot(&self, full_page: bool) -> Result<Vec<u8>, Error> {
        let mut params = json!({"format": "png"});
        if full_page {
            let m = self.call("Page.getLayoutMetrics", json!({})).await?;
            let size = &m["cssContentSize"];
            let w = size["width"].as_f64().unwrap_or(1280.0).min(4000.0);
            let h = size["height"].as_f64().unwrap_or(800.0).min(8000.0);
            params["clip"] = json!({"x": 0, "y": 0, "width": w, "height": h, "scale": 1});
            params["captureBeyondViewport"] = json!(true);
        }
        let r = self
            .cdp
            .call("Page.captureScreenshot", params, Duration::from_secs(30))
            .await?;
        let data = r["data"].as_str().unwrap_or("");
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| Error::DevTools(format!("a screenshot that is not base64: {e}")))
    }

    /// The page as it is now, as a frame like the screencast's. Chromium
    /// sends screencast frames when the page paints, so a viewer that comes
    /// to a page that stands still gets this one first.
    pub async fn still_frame(&self) -> Result<Frame, Error> {
        let metrics = self
            .cdp
            .call("Page.getLayoutMetrics", json!({}), Duration::from_secs(10))
            .await?;
        let viewport = &metrics["cssLayoutViewport"];
        let r = self
            .cdp
            .call(
                "Page.captureScreenshot",
                json!({"format": "jpeg", "quality": 60}),
                Duration::from_secs(10),
            )
            .await?;
        Ok(Frame {
            data: r["data"].as_str().unwrap_or("").to_owned(),
            width: viewport["clientWidth"].as_u64().unwrap_or(1280) as u32,
            height: viewport["clientHeight"].as_u64().unwrap_or(800) as u32,
            url: self.location().0,
        })
    }

    /// Starts the screencast (if it is not on) for as long as the returned
    /// guard lives; frames arrive as [`Observation::Frame`].
    pub async fn screencast(&self) -> Result<Screencast, Error> {
        if self.screencasts.fetch_add(1, Ordering::SeqCst) == 0 {
            let params = json!({"format": "jpeg", "quality": 60, "maxWidth": 1280, "maxHeight": 800, "everyNthFrame": 1});
            if let Err(e) = self.call("Page.startScreencast", params).await {
                self.screencasts.fetch_sub(1, Ordering::SeqCst);
                return Err(e);
            }
        }
        Ok(Screencast { page: self.clone() })
    }

    /// Closes the connection's browser (it exits).
    pub fn close_browser(&self) {
        self.cdp.send("Browser.close", json!({}));
    }
}

/// Keeps the screencast on while it lives.
pub struct Screencast {
    page: Page,
}

impl Drop for Screencast {
    fn drop(&mut self) {
        if self.page.screencasts.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.page.cdp.send("Page.stopScreencast", json!({}));
        }
    }
}

/// A key as CDP wants it.
#[derive(Debug, PartialEq, Eq)]
struct Key {
    key: String,
    code: String,
    code_num: u32,
    text: String,
    modifiers: u32,
}

fn parse_key(spec: &str) -> Result<Key, String> {
    let parts: Vec<&str> = spec.split('+').collect();
    let (name, mods) = match parts.as_slice() {
        [.., ""] if spec.ends_with("++") || spec == "+" => {
            ("+", &parts[..parts.len().saturating_sub(2)])
        }
        [mods @ .., name] => (*name, mods),
        [] => return Err("no key given".into()),
    };
    let mut modifiers = 0;
    for m in mods {
        modifiers |= match m.to_ascii_lowercase().as_str() {
            "alt" => 1,
            "ctrl" | "control" => 2,
            "meta" | "cmd" | "command" => 4,
            "shift" => 8,
            other => {
                return Err(format!(
                    "unknown modifier {other:?}: use Alt, Control, Meta or Shift"
                ));
            }
        };
    }
    let named: &[(&str, &str, u32, &str)] = &[
        ("Enter", "Enter", 13, "\r"),
        ("Tab", "Tab", 9, ""),
        ("Escape", "Escape", 27, ""),
        ("Backspace", "Backspace", 8, ""),
        ("Delete", "Delete", 46, ""),
        ("ArrowUp", "ArrowUp", 38, ""),
        ("ArrowDown", "ArrowDown", 40, ""),
        ("ArrowLeft", "ArrowLeft", 37, ""),
        ("ArrowRight", "ArrowRight", 39, ""),
        ("Home", "Home", 36, ""),
        ("End", "End", 35, ""),
        ("PageUp", "PageUp", 33, ""),
        ("PageDown", "PageDown", 34, ""),
        ("Space", "Space", 32, " "),
    ];
    if let Some((k, c, n, t)) = named.iter().find(|(k, ..)| k.eq_ignore_ascii_case(name)) {
        let key = if *k == "Space" { " " } else { k };
        let text = if modifiers & 7 != 0 { "" } else { t };
        return Ok(Key {
            key: key.into(),
            code: (*c).into(),
            code_num: *n,
            text: text.into(),
            modifiers,
        });
    }
    let mut chars = name.chars();
    match (chars.next(), chars.next()) {
        (Some(ch), None) => {
            let up = ch.to_ascii_uppercase();
            let code = if up.is_ascii_alphabetic() {
                format!("Key{up}")
            } else if ch.is_ascii_digit() {
                format!("Digit{ch}")
            } else {
                String::new()
            };
            let text = if modifiers & 7 != 0 {
                String::new()
            } else {
                ch.to_string()
            };
            Ok(Key {
                key: ch.to_string(),
                code,
                code_num: up as u32,
                text,
                modifiers,
            })
        }
        _ => Err(format!(
            "unknown key {name:?}: use one character or Enter, Tab, Escape, Backspace, Delete, ArrowUp/Down/Left/Right, Home, End, PageUp, PageDown, Space"
        )),
    }
}

/// `Target.setAutoAttach`'s parameters, for the page and every target it starts.
fn auto_attach() -> Value {
    json!({"autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true})
}

/// Enables reports of a target the page started (a worker, an
/// out-of-process frame), then lets it run. Commands to one session are
/// carried out in order, so its first statement runs with reports on.
fn adopt(cdp: &Cdp, p: &Value) {
    let Some(session) = p["sessionId"].as_str() else {
        return;
    };
    let kind = p["targetInfo"]["type"].as_str().unwrap_or("");
    let s = Some(session);
    if matches!(
        kind,
        "iframe" | "worker" | "shared_worker" | "service_worker"
    ) {
        cdp.send_in(s, "Runtime.enable", json!({}));
        cdp.send_in(s, "Network.enable", json!({}));
        cdp.send_in(s, "Target.setAutoAttach", auto_attach());
    }
    cdp.send_in(s, "Runtime.runIfWaitingForDebugger", json!({}));
}

/// A popup the collector attached.
struct Popup {
    target: String,
    url: String,
    /// Whether its [`Report::Popup`] went out (once it has a URL, or
    /// before its first report).
    told: bool,
}

impl Popup {
    /// Its `Report::Popup`, the first time it is asked and it has a URL
    /// (or `now`).
    fn tell(&mut self, now: bool) -> Option<Report> {
        let blank = self.url.is_empty() || self.url == "about:blank";
        if self.told || (blank && !now) {
            return None;
        }
        self.told = true;
        Some(Report::Popup {
            url: if self.url.is_empty() {
                "about:blank".into()
            } else {
                self.url.clone()
            },
        })
    }
}

/// Most popups attached at once (more are not collected).
const MAX_POPUPS: usize = 20;
/// Most targets whose popups are collected (the page's and popups').
const MAX_OPENERS: usize = 100;

/// Attaches a page target that one we know opened (a popup).
fn found(page: &Page, info: &Value) {
    let mut st = page.state.lock().expect("page state");
    let opened_by_us = info["openerId"]
        .as_str()
        .is_some_and(|o| st.openers.iter().any(|k| k == o));
    if info["type"] == "page"
        && opened_by_us
        && info["attached"] != true
        && st.popups.len() + st.attaching.len() < MAX_POPUPS
        && let Some(id) = info["targetId"].as_str()
    {
        st.attaching.push(id.to_owned());
        page.cdp.send(
            "Target.attachToTarget",
            json!({"targetId": id, "flatten": true}),
        );
    }
}

/// Whether an attached target is a popup the collector asked for (not
/// another page Chromium attached by itself, a prerendered one say).
fn is_popup(page: &Page, info: &Value) -> bool {
    let mut st = page.state.lock().expect("page state");
    let id = info["targetId"].as_str().unwrap_or("");
    let before = st.attaching.len();
    st.attaching.retain(|t| t != id);
    st.attaching.len() < before
}

/// Enables reports of a popup we attached; its report that it opened,
/// when it has a URL already.
fn adopt_popup(page: &Page, p: &Value) -> Option<Report> {
    let session = p["sessionId"].as_str()?;
    let info = &p["targetInfo"];
    let mut popup = Popup {
        target: info["targetId"].as_str().unwrap_or("").to_owned(),
        url: cut(info["url"].as_str().unwrap_or(""), 500),
        told: false,
    };
    let told = popup.tell(false);
    {
        let mut st = page.state.lock().expect("page state");
        if st.openers.len() < MAX_OPENERS {
            st.openers.push(popup.target.clone());
        }
        st.popups.insert(session.to_owned(), popup);
    }
    let s = Some(session);
    for m in ["Runtime.enable", "Network.enable", "Page.enable"] {
        page.cdp.send_in(s, m, json!({}));
    }
    page.cdp.send_in(
        s,
        "Page.addScriptToEvaluateOnNewDocument",
        json!({"source": js::DIALOGS}),
    );
    page.cdp
        .send_in(s, "Runtime.evaluate", json!({"expression": js::DIALOGS}));
    page.cdp.send_in(s, "Target.setAutoAttach", auto_attach());
    page.cdp
        .send_in(s, "Runtime.runIfWaitingForDebugger", json!({}));
    told
}

/// `r` marked as a popup's when it came from one, after the popup's own
/// report when it was not told yet.
fn from_popup(page: &Page, session: Option<&str>, r: Report) -> Vec<Report> {
    let mut st = page.state.lock().expect("page state");
    let Some(popup) = session.and_then(|s| st.popups.get_mut(s)) else {
        return vec![r];
    };
    let mut out: Vec<Report> = popup.tell(true).into_iter().collect();
    let url = &popup.url;
    out.push(match r {
        Report::Exception { text, stack } => Report::Exception {
            text: cut(&format!("[popup {url}] {text}"), ENTRY_TEXT),
            stack,
        },
        Report::Console { level, text } => Report::Console {
            level,
            text: cut(&format!("[popup {url}] {text}"), ENTRY_TEXT),
        },
        r => r,
    });
    out
}

/// Keeps a report and publishes it.
fn publish(page: &Page, r: Report) {
    page.state.lock().expect("page state").push(r.clone());
    let _ = page.observations.send(Observation::Report(r));
}

/// The collector: keeps the page's state and republishes what others watch.
async fn collect(page: Page, mut events: broadcast::Receiver<CdpEvent>, loads: watch::Sender<u64>) {
    loop {
        let ev = match events.recv().await {
            Ok(ev) => ev,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "the browser collector fell behind; reports were lost"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let p = &ev.params;
        match ev.method.as_str() {
            "Target.attachedToTarget" if is_popup(&page, &p["targetInfo"]) => {
                if let Some(r) = adopt_popup(&page, p) {
                    publish(&page, r);
                }
                continue;
            }
            "Target.attachedToTarget" => {
                adopt(&page.cdp, p);
                continue;
            }
            "Target.targetCreated" => {
                found(&page, &p["targetInfo"]);
                continue;
            }
            "Target.targetInfoChanged" => {
                // A popup's URL, once it loads one.
                let info = &p["targetInfo"];
                if let (Some(id), Some(url)) = (info["targetId"].as_str(), info["url"].as_str()) {
                    let told = {
                        let mut st = page.state.lock().expect("page state");
                        let mut told = None;
                        for popup in st.popups.values_mut().filter(|p| p.target == id) {
                            popup.url = cut(url, 500);
                            told = told.or(popup.tell(false));
                        }
                        told
                    };
                    if let Some(r) = told {
                        publish(&page, r);
                    }
                }
                continue;
            }
            "Target.targetDestroyed" => {
                // A popup that went before it was attached frees its place.
                if let Some(id) = p["targetId"].as_str() {
                    page.state
                        .lock()
                        .expect("page state")
                        .attaching
                        .retain(|t| t != id);
                }
                continue;
            }
            "Target.detachedFromTarget" => {
                if let Some(s) = p["sessionId"].as_str() {
                    page.state.lock().expect("page state").popups.remove(s);
                }
                continue;
            }
            _ => {}
        }
        // An attached target speaks only for its reports; the page's own
        // state (URL, loads, dialogs, frames) is the page session's.
        let own = ev.session.is_none();
        let report = match ev.method.as_str() {
            "Runtime.consoleAPICalled" if p["args"][0]["value"] == js::DIALOG_MARK => {
                Some(Report::Dialog {
                    kind: p["args"][1]["value"].as_str().unwrap_or("alert").to_owned(),
                    message: p["args"][2]["value"].as_str().unwrap_or("").to_owned(),
                })
            }
            "Runtime.consoleAPICalled" => Some(Report::Console {
                level: p["type"].as_str().unwrap_or("log").to_owned(),
                text: console_text(&p["args"]),
            }),
            "Runtime.exceptionThrown" => {
                let d = &p["exceptionDetails"];
                let desc = d["exception"]["description"]
                    .as_str()
                    .or_else(|| d["exception"]["value"].as_str())
                    .unwrap_or("");
                let text = if desc.is_empty() {
                    d["text"].as_str().unwrap_or("exception").to_owned()
                } else {
                    desc.lines().next().unwrap_or(desc).to_owned()
                };
                let mut stack: String =
                    desc.lines().skip(1).take(20).collect::<Vec<_>>().join("\n");
                if stack.is_empty()
                    && let Some(url) = d["url"].as_str()
                {
                    stack = format!(
                        "    at {url}:{}:{}",
                        d["lineNumber"].as_i64().unwrap_or(0) + 1,
                        d["columnNumber"].as_i64().unwrap_or(0) + 1
                    );
                }
                Some(Report::Exception {
                    text: cut(&text, ENTRY_TEXT),
                    stack: cut(&stack, ENTRY_TEXT),
                })
            }
            "Network.requestWillBeSent" => {
                let id = p["requestId"].as_str().unwrap_or("").to_owned();
                let req = (
                    p["request"]["method"].as_str().unwrap_or("GET").to_owned(),
                    cut(p["request"]["url"].as_str().unwrap_or(""), 500),
                );
                page.state
                    .lock()
                    .expect("page state")
                    .inflight
                    .insert(id, req);
                None
            }
            "Network.responseReceived" => {
                let status = p["response"]["status"].as_u64().unwrap_or(0) as u16;
                let mut st = page.state.lock().expect("page state");
                let is_main =
                    p["type"] == "Document" && p["frameId"].as_str() == st.main_frame.as_deref();
                if is_main {
                    st.status = Some(status);
                }
                let id = p["requestId"].as_str().unwrap_or("");
                if status >= 400 {
                    let (method, url) = st.inflight.get(id).cloned().unwrap_or_else(|| {
                        (
                            "GET".into(),
                            cut(p["response"]["url"].as_str().unwrap_or(""), 500),
                        )
                    });
                    Some(Report::Request {
                        method,
                        url,
                        status,
                        error: String::new(),
                    })
                } else {
                    None
                }
            }
            "Network.loadingFinished" => {
                let id = p["requestId"].as_str().unwrap_or("");
                page.state.lock().expect("page state").inflight.remove(id);
                None
            }
            "Network.loadingFailed" => {
                let id = p["requestId"].as_str().unwrap_or("");
                let req = page.state.lock().expect("page state").inflight.remove(id);
                let canceled = p["canceled"].as_bool().unwrap_or(false);
                match req {
                    Some((method, url)) if !canceled => Some(Report::Request {
                        method,
                        url,
                        status: 0,
                        error: p["errorText"].as_str().unwrap_or("failed").to_owned(),
                    }),
                    _ => None,
                }
            }
            "Page.javascriptDialogOpening" if own => {
                let kind = p["type"].as_str().unwrap_or("alert").to_owned();
                // Dismiss at once (a `beforeunload` one is accepted so navigation goes on).
                let cdp = page.cdp.clone();
                let accept = kind == "beforeunload";
                tokio::spawn(async move {
                    // The event can come before Chromium shows the dialog: try again a few times.
                    for _ in 0..20 {
                        let r = cdp
                            .call(
                                "Page.handleJavaScriptDialog",
                                json!({"accept": accept}),
                                COMMAND,
                            )
                            .await;
                        match r {
                            Ok(_) | Err(Error::Closed(_)) => return,
                            Err(e) => tracing::debug!(error = %e, "dismissing a dialog"),
                        }
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                });
                let mut st = page.state.lock().expect("page state");
                st.dialogs += 1;
                if st.dialogs == MAX_DIALOGS {
                    // A page that raises dialogs without end starves navigation: turn them off.
                    page.cdp.send(
                        "Runtime.evaluate",
                        json!({"expression": "window.alert = () => {}; window.confirm = () => false; window.prompt = () => null;"}),
                    );
                    st.push(Report::Dialog {
                        kind,
                        message: format!("the page opened {MAX_DIALOGS} dialogs; its alert, confirm and prompt are turned off until it navigates"),
                    });
                    None
                } else {
                    // Endless dialogs are reported a few times, not endlessly.
                    (st.dialogs <= 5).then(|| Report::Dialog {
                        kind,
                        message: cut(p["message"].as_str().unwrap_or(""), 500),
                    })
                }
            }
            "Page.frameNavigated" if own => {
                let f = &p["frame"];
                if f.get("parentId").is_none() {
                    let url = f["url"].as_str().unwrap_or("").to_owned();
                    let mut st = page.state.lock().expect("page state");
                    st.main_frame = f["id"].as_str().map(str::to_owned);
                    st.url = url.clone();
                    st.dialogs = 0;
                    let title = st.title.clone();
                    drop(st);
                    let _ = page.observations.send(Observation::Page { url, title });
                }
                None
            }
            "Page.navigatedWithinDocument" if own => {
                let url = p["url"].as_str().unwrap_or("").to_owned();
                page.state.lock().expect("page state").url = url.clone();
                let title = page.state.lock().expect("page state").title.clone();
                let _ = page.observations.send(Observation::Page { url, title });
                None
            }
            "Page.loadEventFired" if own => {
                let n = {
                    let mut st = page.state.lock().expect("page state");
                    st.loads += 1;
                    st.loads
                };
                loads.send_replace(n);
                let pg = page.clone();
                tokio::spawn(async move {
                    if let Ok(Value::String(title)) =
                        pg.eval("document.title", Duration::from_secs(5)).await
                    {
                        let url = {
                            let mut st = pg.state.lock().expect("page state");
                            st.title = title.clone();
                            st.url.clone()
                        };
                        let _ = pg.observations.send(Observation::Page { url, title });
                    }
                });
                None
            }
            "Page.screencastFrame" if own => {
                page.cdp.send(
                    "Page.screencastFrameAck",
                    json!({"sessionId": p["sessionId"]}),
                );
                let m = &p["metadata"];
                let frame = Frame {
                    data: p["data"].as_str().unwrap_or("").to_owned(),
                    width: m["deviceWidth"].as_f64().unwrap_or(0.0) as u32,
                    height: m["deviceHeight"].as_f64().unwrap_or(0.0) as u32,
                    url: page.state.lock().expect("page state").url.clone(),
                };
                let _ = page.observations.send(Observation::Frame(Arc::new(frame)));
                None
            }
            "Inspector.targetCrashed" if own => {
                // The page's renderer died: close the browser, so the next use starts a new one.
                page.close_browser();
                None
            }
            _ => None,
        };
        if let Some(r) = report {
            for r in from_popup(&page, ev.session.as_deref(), r) {
                publish(&page, r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse() {
        let k = parse_key("Enter").unwrap();
        assert_eq!(
            (k.key.as_str(), k.code_num, k.text.as_str()),
            ("Enter", 13, "\r")
        );
        let k = parse_key("Control+a").unwrap();
        assert_eq!(
            (
                k.key.as_str(),
                k.modifiers,
                k.text.as_str(),
                k.code.as_str()
            ),
            ("a", 2, "", "KeyA")
        );
        assert_eq!(parse_key("Shift+Tab").unwrap().modifiers, 8);
        assert!(parse_key("Hyper+x").unwrap_err().contains("modifier"));
        assert!(parse_key("F13x").unwrap_err().contains("unknown key"));
    }

    #[test]
    fn reports_read_as_lines() {
        let r = Report::Exception {
            text: "Error: boom".into(),
            stack: "    at f (x.js:1:1)".into(),
        };
        assert!(r.is_error());
        assert_eq!(
            r.line(),
            "uncaught exception: Error: boom\n    at f (x.js:1:1)"
        );
        let r = Report::Request {
            method: "GET".into(),
            url: "/x".into(),
            status: 404,
            error: String::new(),
        };
        assert!(!r.is_error());
        assert_eq!(r.line(), "request answered 404: GET /x");
        assert!(
            console_text(
                &json!([{"type": "string", "value": "a"}, {"type": "number", "value": 2}, {"type": "object", "description": "Object"}])
            ) == "a 2 Object"
        );
    }
}
