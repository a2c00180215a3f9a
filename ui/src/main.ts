// The firepit web UI: a single page served by the daemon at `/`.
//
// Routes (history API): `/` the sessions list, `/s/<id>` a session. The
// daemon answers every non-API path with this page, so reloads and links work.

import "@xterm/xterm/css/xterm.css";
import "./style.css";
import "./layout.css";
import "./theme";
import { setUnauthorizedHandler } from "./api";
import { h, replace } from "./dom";
import { notFoundPage, topbarTools } from "./layout";
import { confirmLeave } from "./guard";
import { SessionsPage } from "./sessions";
import { SessionPage } from "./session";

export interface Page {
  /** Called when the page is left: close sockets, stop timers. */
  dispose(): void;
}

const root = document.getElementById("app")!;
let current: Page | null = null;
let signedOut = false;
/** The path of the page shown. */
let shown = location.pathname;

export function navigate(path: string, replaceState = false): void {
  if (path !== location.pathname && !confirmLeave()) return;
  if (replaceState) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  render();
}

function render(): void {
  shown = location.pathname;
  current?.dispose();
  current = null;
  if (signedOut) {
    showSignIn();
    return;
  }
  const m = location.pathname.match(/^\/s\/([A-Za-z0-9_-]+)\/?$/);
  if (m) {
    current = new SessionPage(root, m[1]);
  } else if (location.pathname === "/" || location.pathname === "") {
    current = new SessionsPage(root);
  } else {
    document.title = "Not found · firepit";
    replace(
      root,
      h(
        "div.page",
        {},
        h("header.topbar", {}, h("a.brand", { href: "/", "data-link": true }, "firepit"), h("span.grow"), topbarTools()),
        notFoundPage("Not found", `Nothing lives at ${location.pathname}.`),
      ),
    );
  }
}

function showSignIn(): void {
  replace(
    root,
    h(
      "main.center",
      {},
      h("h1", {}, "Sign in to firepit"),
      h("p", {}, "Open the login link that ", h("code", {}, "firepit up"), " printed:"),
      h("pre", {}, "http://localhost:7777/?token=…"),
      h("p.muted", {}, "The token is also in the data dir's ", h("code", {}, "token"), " file (default /var/lib/firepit/token)."),
    ),
  );
}

setUnauthorizedHandler(() => {
  if (signedOut) return;
  signedOut = true;
  current?.dispose();
  current = null;
  showSignIn();
});

// Links with data-link navigate inside the page.
document.addEventListener("click", (e) => {
  const a = (e.target as HTMLElement).closest("a[data-link]") as HTMLAnchorElement | null;
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  navigate(a.getAttribute("href") ?? "/");
});
// Back and forward: when the person stays (unsaved work), the page they were
// on is put back in the history.
window.addEventListener("popstate", () => {
  if (location.pathname !== shown && !confirmLeave()) {
    history.pushState(null, "", shown);
    return;
  }
  render();
});
render();
