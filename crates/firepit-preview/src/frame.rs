//! The preview's frame page, `/__firepit/frame?path=…` on a preview host:
//! what the UI's Preview tab frames, so that its URL bar can follow the
//! app and its back and forward buttons work, though the app is on another
//! origin than the UI.
//!
//! The page holds one full-size `<iframe>` with the app at `path`. Being on
//! the app's own origin, it sees the app's location (`load`, and the
//! Navigation API's `currententrychange` for `pushState`, `replaceState`
//! and hash changes) and tells the UI with `postMessage` to the UI's origin
//! only: `{firepit: "preview-location", path, title, canGoBack,
//! canGoForward}`. It takes `{firepit: "back" | "forward" | "reload"}` and
//! `{firepit: "go", path}` from its parent, and only from the UI's origin;
//! back and forward go through the app frame's own Navigation API (they
//! never step the UI's history), and are reported unavailable
//! (`canGoBack: null`) where the browser has none.
//!
//! Nothing is injected into the app's responses: the app runs as it would
//! framed directly, one frame deeper. Its location is the app's to set, so
//! the UI treats a reported path as text to show, never as a place to go
//! outside the preview host.

use hyper::{Response, StatusCode};

use crate::pages::{escape, full};
use crate::proxy::Body;

/// The frame page for the app's `path` (a local path, checked by the
/// caller), framed by `ui_origin` alone.
pub fn page(ui_origin: &str, path: &str) -> Response<Body> {
    let html = html(ui_origin, path);
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .header(
            "content-security-policy",
            format!("frame-ancestors {ui_origin}"),
        )
        .header("x-content-type-options", "nosniff")
        .body(full(html))
        .expect("static response parts")
}

/// A JavaScript string literal of `s`: quotes, backslashes, `<` (no
/// `</script>` can end the script) and every control or line-separator
/// character escaped.
fn js_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' | '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn html(ui_origin: &str, path: &str) -> String {
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>preview</title>
<style>html,body{{margin:0;height:100%;overflow:hidden}}iframe{{border:0;width:100%;height:100%;display:block}}</style>
</head><body><iframe id="app" src="{src}" allow="clipboard-read; clipboard-write; fullscreen"></iframe>
<script>
(() => {{
  const ui = {ui};
  const f = document.getElementById("app");
  const report = () => {{
    try {{
      const w = f.contentWindow;
      const l = w.location;
      if (l.origin !== location.origin) return;
      const n = w.navigation;
      parent.postMessage({{
        firepit: "preview-location",
        path: l.pathname + l.search + l.hash,
        title: w.document.title,
        canGoBack: n ? n.canGoBack : null,
        canGoForward: n ? n.canGoForward : null,
      }}, ui);
    }} catch (e) {{
      // the app went to another origin: nothing to report
    }}
  }};
  f.addEventListener("load", () => {{
    report();
    try {{
      const w = f.contentWindow;
      if (w.navigation) w.navigation.addEventListener("currententrychange", report);
      else {{
        w.addEventListener("hashchange", report);
        w.addEventListener("popstate", report);
      }}
    }} catch (e) {{}}
  }});
  addEventListener("message", (e) => {{
    if (e.source !== parent || e.origin !== ui) return;
    const m = e.data || {{}};
    let n = null;
    try {{ n = f.contentWindow.navigation || null; }} catch (err) {{}}
    if (m.firepit === "back" && n && n.canGoBack) n.back();
    else if (m.firepit === "forward" && n && n.canGoForward) n.forward();
    else if (m.firepit === "reload") {{
      try {{ f.contentWindow.location.reload(); }} catch (err) {{ f.src = f.src; }}
    }} else if (m.firepit === "go" && typeof m.path === "string" && m.path.startsWith("/") && !m.path.startsWith("//") && !m.path.includes("\\")) {{
      f.src = m.path;
    }}
  }});
}})();
</script></body></html>
"#,
        src = escape(path),
        ui = js_string(ui_origin),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_frames_the_path_and_speaks_to_the_ui_only() {
        let h = html("http://localhost:7777", "/a?b=1&c=\"x\"");
        assert!(h.contains(r#"src="/a?b=1&amp;c=&quot;x&quot;""#), "{h}");
        assert!(h.contains(r#"const ui = "http://localhost:7777";"#));
        assert!(h.contains("postMessage("));
        // Nothing given can close the script.
        let evil = html("http://x</script><script>alert(1)//", "/");
        assert!(!evil.contains("x</script>"));
        assert_eq!(js_string("a\"b\\\n<"), r#""a\u0022b\u005c\u000a\u003c""#);
        let r = page("http://localhost:7777", "/");
        assert_eq!(
            r.headers()["content-security-policy"],
            "frame-ancestors http://localhost:7777"
        );
    }
}
