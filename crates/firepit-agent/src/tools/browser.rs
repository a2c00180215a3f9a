//! The browser tools: `browser_open`, `browser_back`, `browser_reload`,
//! `browser_wait`, `browser_snapshot`, `browser_click`, `browser_type`,
//! `browser_select`, `browser_press`, `browser_scroll`, `browser_eval`,
//! `browser_console`, `browser_screenshot`. They drive the session's Chromium
//! (inside the machine) through [`SessionHooks::browser`]; actions report the
//! errors the page raised while they ran, and the first answer after the
//! browser restarted says so.

use std::time::Duration;

use firepit_browser::Page;
use serde::Deserialize;
use serde_json::json;

use super::ToolContext;
use super::hooks::SessionHooks;
use crate::message::ToolDef;

/// Longest wait a call may ask for.
const MAX_WAIT: u64 = 120;
/// A snapshot's default and largest size.
const SNAPSHOT_DEFAULT: usize = 12_000;
const SNAPSHOT_MAX: usize = 60_000;

fn target_props() -> serde_json::Value {
    json!({
        "ref": {"type": "string", "description": "An element ref from browser_snapshot, e.g. 'e12'."},
        "selector": {"type": "string", "description": "A CSS selector, when there is no ref."}
    })
}

fn with_target(extra: serde_json::Value) -> serde_json::Value {
    let mut p = target_props();
    if let (Some(p), Some(e)) = (p.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    p
}

pub(super) fn defs() -> Vec<ToolDef> {
    vec![
        ToolDef {
            name: "browser_open",
            description: "Open a URL in the machine's browser (headless Chromium inside the machine: http://localhost:PORT/ reaches the app you run) and wait for it to load. Returns the URL, HTTP status, title and any errors the page raised.",
            schema: json!({"type": "object", "properties": {
                "url": {"type": "string"},
                "timeout_s": {"type": "integer", "minimum": 1, "maximum": MAX_WAIT, "description": "Default 15."}
            }, "required": ["url"]}),
        },
        ToolDef {
            name: "browser_back",
            description: "Go back one page in the browser's history.",
            schema: json!({"type": "object", "properties": {}}),
        },
        ToolDef {
            name: "browser_reload",
            description: "Reload the browser's page.",
            schema: json!({"type": "object", "properties": {}}),
        },
        ToolDef {
            name: "browser_wait",
            description: "Wait until the page shows a text, has an element matching a selector, or (neither given) the network is idle.",
            schema: json!({"type": "object", "properties": {
                "text": {"type": "string"},
                "selector": {"type": "string"},
                "timeout_s": {"type": "integer", "minimum": 1, "maximum": MAX_WAIT, "description": "Default 10."}
            }}),
        },
        ToolDef {
            name: "browser_snapshot",
            description: "The page as a compact outline: headings, text, links, buttons and form fields with their values, each control with a ref (e.g. [ref=e3]) to use in browser_click/type/select.",
            schema: json!({"type": "object", "properties": {
                "max_chars": {"type": "integer", "minimum": 500, "maximum": SNAPSHOT_MAX, "description": "Default 12000."}
            }}),
        },
        ToolDef {
            name: "browser_click",
            description: "Click an element (by ref or CSS selector) as a person would, at its centre.",
            schema: json!({"type": "object", "properties": target_props()}),
        },
        ToolDef {
            name: "browser_type",
            description: "Type text into a field (by ref or selector).",
            schema: json!({"type": "object", "properties": with_target(json!({
                "text": {"type": "string"},
                "clear": {"type": "boolean", "description": "Empty the field first (default true)."},
                "submit": {"type": "boolean", "description": "Press Enter afterwards."}
            })), "required": ["text"]}),
        },
        ToolDef {
            name: "browser_select",
            description: "Choose an option of a <select> by its value or text.",
            schema: json!({"type": "object", "properties": with_target(json!({"value": {"type": "string"}})), "required": ["value"]}),
        },
        ToolDef {
            name: "browser_press",
            description: "Press a key in the focused element: Enter, Tab, Escape, Backspace, ArrowDown, a character, or a chord such as Control+a.",
            schema: json!({"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]}),
        },
        ToolDef {
            name: "browser_scroll",
            description: "Scroll an element (by ref or selector) into view, or the page by dy pixels (default one screen down).",
            schema: json!({"type": "object", "properties": with_target(json!({
                "dx": {"type": "number"}, "dy": {"type": "number"}
            }))}),
        },
        ToolDef {
            name: "browser_eval",
            description: "Evaluate a JavaScript expression in the page (promises are awaited) and return its value as JSON. Use it to read application state.",
            schema: json!({"type": "object", "properties": {
                "expression": {"type": "string"},
                "timeout_s": {"type": "integer", "minimum": 1, "maximum": 60, "description": "Default 10."}
            }, "required": ["expression"]}),
        },
        ToolDef {
            name: "browser_console",
            description: "What the page reported since you last asked: console messages, uncaught exceptions, failed requests and dismissed dialogs.",
            schema: json!({"type": "object", "properties": {}}),
        },
        ToolDef {
            name: "browser_screenshot",
            description: "A PNG screenshot of the page, stored as a session artifact the person can see. Prefer browser_snapshot for reading the page.",
            schema: json!({"type": "object", "properties": {
                "full_page": {"type": "boolean", "description": "The whole page rather than the viewport."}
            }}),
        },
    ]
}

#[derive(Deserialize, Default)]
pub(super) struct Args {
    url: Option<String>,
    timeout_s: Option<u64>,
    text: Option<String>,
    selector: Option<String>,
    r#ref: Option<String>,
    max_chars: Option<usize>,
    clear: Option<bool>,
    submit: Option<bool>,
    value: Option<String>,
    key: Option<String>,
    dx: Option<f64>,
    dy: Option<f64>,
    expression: Option<String>,
    full_page: Option<bool>,
}

fn wait(a: &Args, default: u64) -> Duration {
    Duration::from_secs(a.timeout_s.unwrap_or(default).clamp(1, MAX_WAIT))
}

/// `localhost:4000/x` → `http://localhost:4000/x`; full URLs and `about:`,
/// `data:` URLs as they are.
fn normalize_url(url: &str) -> String {
    let u = url.trim();
    if u.contains("://") || u.starts_with("about:") || u.starts_with("data:") {
        u.to_owned()
    } else if u.starts_with(':') {
        format!("http://localhost{u}")
    } else {
        format!("http://{u}")
    }
}

fn target(a: &Args) -> Result<(Option<&str>, Option<&str>), String> {
    match (a.r#ref.as_deref(), a.selector.as_deref()) {
        (None, None) => {
            Err("give the element's ref (from browser_snapshot) or a CSS selector".into())
        }
        (r, s) => Ok((r, s)),
    }
}

fn hooks(ctx: &ToolContext) -> Result<&dyn SessionHooks, String> {
    ctx.hooks
        .as_deref()
        .ok_or_else(|| "the browser is not available in this session".to_owned())
}

/// Appends the errors the page raised that the agent has not been told of
/// (during this call or since the last one).
fn with_errors(page: &Page, mut out: String) -> String {
    if let Some(news) = errors_note(page) {
        out.push('\n');
        out.push_str(&news);
    }
    out
}

/// The errors the page raised that the agent has not been told of, as one
/// note; `None` when there are none. They count as told from now on.
pub(crate) fn errors_note(page: &Page) -> Option<String> {
    let errors = page.undelivered_errors();
    if errors.is_empty() {
        return None;
    }
    let mut out = String::from("the page raised:");
    for e in errors.iter().take(20) {
        out.push_str("\n- ");
        out.push_str(&e.line());
    }
    if errors.len() > 20 {
        out.push_str(&format!("\n- … and {} more", errors.len() - 20));
    }
    Some(out)
}

/// Runs the browser tool `name`; a screenshot's PNG goes to `png` too.
pub(super) async fn run(
    ctx: &ToolContext,
    name: &str,
    a: Args,
    png: &mut Option<Vec<u8>>,
) -> Result<String, String> {
    let h = hooks(ctx)?;
    let browser = h.browser();
    let (page, mut note) = browser.page().await.map_err(|e| crate::agent::chain(&e))?;
    let retry = name == "browser_open";
    let url = a.url.clone();
    let mut r = act(h, &page, name, a, png).await;
    if r.is_err() && page.is_closed() {
        // It went away under this call: start it again now, and open the page again.
        let (page, _) = browser.page().await.map_err(|e| crate::agent::chain(&e))?;
        note = Some(firepit_browser::RESTARTED);
        if retry {
            r = act(
                h,
                &page,
                name,
                Args {
                    url,
                    ..Args::default()
                },
                png,
            )
            .await;
        }
    }
    match (r, note) {
        (Ok(out), Some(n)) => Ok(format!("{n}\n{out}")),
        (Err(e), Some(n)) => Err(format!("{n}\n{e}")),
        (r, None) => r,
    }
}

async fn settle() {
    // Let handlers the action set off run, so their errors are in the answer.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

async fn act(
    h: &dyn SessionHooks,
    page: &Page,
    name: &str,
    a: Args,
    png: &mut Option<Vec<u8>>,
) -> Result<String, String> {
    let e = |e: firepit_browser::Error| {
        let closed = matches!(e, firepit_browser::Error::Closed(_));
        let mut s = crate::agent::chain(&e);
        if closed {
            s.push_str(" — the next browser call starts it again");
        }
        s
    };
    let out = match name {
        "browser_open" => {
            let url = a.url.as_deref().ok_or("give the url to open")?;
            page.open(&normalize_url(url), wait(&a, 15))
                .await
                .map_err(e)?
        }
        "browser_back" => page.back(wait(&a, 15)).await.map_err(e)?,
        "browser_reload" => page.reload(wait(&a, 15)).await.map_err(e)?,
        "browser_wait" => page
            .wait_for(a.text.as_deref(), a.selector.as_deref(), wait(&a, 10))
            .await
            .map_err(e)?,
        "browser_snapshot" => {
            let max = a
                .max_chars
                .unwrap_or(SNAPSHOT_DEFAULT)
                .clamp(500, SNAPSHOT_MAX);
            page.snapshot(max).await.map_err(e)?
        }
        "browser_click" => {
            let (r, s) = target(&a)?;
            let out = page.click(r, s).await.map_err(e)?;
            settle().await;
            out
        }
        "browser_type" => {
            let (r, s) = target(&a)?;
            let text = a.text.as_deref().unwrap_or("");
            let out = page
                .type_text(
                    r,
                    s,
                    text,
                    a.clear.unwrap_or(true),
                    a.submit.unwrap_or(false),
                )
                .await
                .map_err(e)?;
            settle().await;
            out
        }
        "browser_select" => {
            let (r, s) = target(&a)?;
            let v = a.value.as_deref().ok_or("give the value to select")?;
            let out = page.select(r, s, v).await.map_err(e)?;
            settle().await;
            out
        }
        "browser_press" => {
            let k = a.key.as_deref().ok_or("give the key to press")?;
            let out = page.press(k).await.map_err(e)?;
            settle().await;
            out
        }
        "browser_scroll" => page
            .scroll(
                a.r#ref.as_deref(),
                a.selector.as_deref(),
                a.dx.unwrap_or(0.0),
                a.dy.unwrap_or(700.0),
            )
            .await
            .map_err(e)?,
        "browser_eval" => {
            let x = a
                .expression
                .as_deref()
                .ok_or("give the expression to evaluate")?;
            let t = Duration::from_secs(a.timeout_s.unwrap_or(10).clamp(1, 60));
            let v = page.eval(x, t).await.map_err(e)?;
            serde_json::to_string_pretty(&v).unwrap_or_default()
        }
        "browser_console" => {
            let (reports, dropped) = page.take_reports();
            let mut out = if reports.is_empty() {
                "nothing reported since the last look".to_owned()
            } else {
                reports
                    .iter()
                    .map(|r| r.line())
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            if dropped > 0 {
                out.push_str(&format!(
                    "\n({dropped} older reports were dropped for lack of room)"
                ));
            }
            return Ok(out);
        }
        "browser_screenshot" => {
            let shot = page
                .screenshot(a.full_page.unwrap_or(false))
                .await
                .map_err(e)?;
            let bytes = shot.len();
            let name = h.save_artifact("screenshot.png", "image/png", shot.clone())?;
            *png = Some(shot);
            let (url, _) = page.location();
            format!(
                "saved the screenshot of {url} as the artifact {name} ({bytes} bytes); the person can see it. Use browser_snapshot to read the page."
            )
        }
        other => return Err(format!("no browser tool {other}")),
    };
    Ok(with_errors(page, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_a_scheme() {
        assert_eq!(normalize_url("localhost:4000/x"), "http://localhost:4000/x");
        assert_eq!(normalize_url(":8000"), "http://localhost:8000");
        assert_eq!(normalize_url("https://a.test/"), "https://a.test/");
        assert_eq!(normalize_url("about:blank"), "about:blank");
    }
}
