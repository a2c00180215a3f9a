// A session's page: the agent chat on the left; terminal, preview, browser,
// services, files and timeline as tabs on the right. One event stream feeds
// them all, resuming from its cursor after a drop.
//
// Keys: Alt+1…6 switch tabs, Alt+0 (or Alt+C) focuses the chat.

import { api, type Session } from "./api";
import { BrowserPane } from "./browser";
import { Chat } from "./chat";
import { age, h, notice, replace } from "./dom";
import { EventStream } from "./events";
import { FilesPane } from "./files";
import { navigate, type Page } from "./main";
import { PreviewPane } from "./preview";
import { ServicesPane } from "./services";
import { TerminalTabs } from "./terminals";
import { TimelinePane } from "./timeline";

type TabName = "terminal" | "preview" | "browser" | "services" | "files" | "timeline";
const TABS: TabName[] = ["terminal", "preview", "browser", "services", "files", "timeline"];

export class SessionPage implements Page {
  private stream: EventStream | null = null;
  private chat: Chat;
  private terminal: TerminalTabs;
  private preview: PreviewPane;
  private browser: BrowserPane;
  private services: ServicesPane;
  private files: FilesPane;
  private timeline = new TimelinePane();
  private tab: TabName = "terminal";
  private tabButtons = new Map<TabName, HTMLButtonElement>();
  private panes = new Map<TabName, HTMLElement>();
  private state = h("span.state");
  private conn = h("span.conn-status#events-status");
  private actions = h("span.actions");
  private banner = h("div.banner", { hidden: true, role: "alert" });
  private session: Session | null = null;
  private keys = (e: KeyboardEvent) => this.onKey(e);
  private disposed = false;

  constructor(
    private readonly root: HTMLElement,
    private readonly id: string,
  ) {
    document.title = `${id} · firepit`;
    this.chat = new Chat(id);
    this.terminal = new TerminalTabs(id, async () => {
      const s = await api.session(id);
      if (this.session && s.state !== this.session.state) this.setSession(s);
      return s.state === "running";
    });
    this.preview = new PreviewPane(id);
    this.browser = new BrowserPane(id);
    this.services = new ServicesPane(id, () => this.show("services"));
    this.files = new FilesPane(id);
    replace(root, h("div.page", {}, this.header(), notice("loading", "Loading the session…")));
    // Capture: the terminal would otherwise take Alt+digit for itself.
    document.addEventListener("keydown", this.keys, true);
    void this.load();
  }

  dispose(): void {
    this.disposed = true;
    document.removeEventListener("keydown", this.keys, true);
    this.stream?.close();
    this.terminal.dispose();
    this.browser.dispose();
    this.services.dispose();
  }

  private header(): HTMLElement {
    return h(
      "header.topbar",
      {},
      h("a.brand", { href: "/", "data-link": true }, "firepit"),
      h("a.crumb", { href: "/", "data-link": true }, "Sessions"),
      h("span.crumb.mono#session-id", {}, this.id),
      this.state,
      h("span.grow"),
      this.conn,
      this.services.runButton,
      this.actions,
    );
  }

  private async load(): Promise<void> {
    let s: Session;
    try {
      s = await api.session(this.id);
    } catch (e) {
      replace(
        this.root,
        h(
          "div.page",
          {},
          this.header(),
          notice("error", (e as Error).message, h("a", { href: "/", "data-link": true }, "Back to the sessions")),
        ),
      );
      return;
    }
    if (this.disposed) return;
    this.setSession(s);
    const tabs = h(
      "nav.tabs",
      { role: "tablist" },
      TABS.map((t, i) => {
        const b = h(
          "button.tab",
          { type: "button", role: "tab", id: `tab-${t}`, title: `${label(t)} (Alt+${i + 1})`, onclick: () => this.show(t) },
          label(t),
        );
        this.tabButtons.set(t, b);
        return b;
      }),
    );
    const panes: [TabName, HTMLElement][] = [
      ["terminal", this.terminal.el],
      ["preview", this.preview.el],
      ["browser", this.browser.el],
      ["services", this.services.el],
      ["files", this.files.el],
      ["timeline", this.timeline.el],
    ];
    const right = h("div.work", {}, tabs);
    for (const [t, el] of panes) {
      const wrap = h("div.tabpanel", { role: "tabpanel", id: `panel-${t}`, hidden: true }, el);
      this.panes.set(t, wrap);
      right.appendChild(wrap);
    }
    replace(this.root, h("div.page", {}, this.header(), this.banner, h("main.workspace", {}, this.chat.el, right)));
    this.setSession(s);

    let replayUntil = 0;
    try {
      const status = await api.agent(this.id);
      this.chat.applyStatus(status);
      replayUntil = status.last_seq;
    } catch {
      // the chat still fills from the log
    }
    if (this.disposed) return;
    const stream = new EventStream(this.id, replayUntil);
    this.stream = stream;
    stream.onStatus((st) => {
      replace(this.conn, st === "live" ? "live" : st === "connecting" ? "connecting…" : st === "reconnecting" ? "reconnecting…" : "closed");
      this.conn.className = `conn-status ${st === "live" ? "ok" : st === "reconnecting" ? "bad" : "pending"}`;
    });
    stream.on((e) => {
      this.chat.onEvent(e);
      this.preview.onEvent(e);
      this.services.onEvent(e);
      this.timeline.onEvent(e);
      if (e.type === "session_state" && this.session) {
        this.setSession({ ...this.session, state: e.state as Session["state"], error: e.error as string | undefined });
      }
    });
    stream.start();
    void this.preview.refresh();
    const wanted = location.hash.slice(1) as TabName;
    this.show(TABS.includes(wanted) ? wanted : "terminal");
  }

  private setSession(s: Session): void {
    this.session = s;
    const running = s.state === "running";
    this.terminal.setRunning(running);
    this.preview.setRunning(running);
    this.services.setRunning(running);
    this.files.setRunning(running);
    replace(this.state, s.state);
    this.state.className = `state ${s.state}`;
    this.state.title = `${s.image} image, made ${age(s.created_at)} ago`;
    const act = (text: string, f: () => Promise<unknown>, cls = "") =>
      h(`button.small${cls}`, {
        type: "button",
        onclick: async () => {
          try {
            await f();
          } catch (e) {
            this.showBanner((e as Error).message);
          }
          if (this.disposed) return;
          try {
            this.setSession(await api.session(this.id));
          } catch {
            // the session is gone (destroyed) or the daemon is away
          }
        },
      }, text);
    replace(
      this.actions,
      s.state === "running"
        ? act("Stop", async () => {
            // Let go of the shell first: it goes away with the machine.
            this.terminal.setRunning(false);
            await api.stop(this.id);
          })
        : null,
      s.state === "stopped" || s.state === "failed" ? act("Start", () => api.start(this.id)) : null,
      act(
        "Destroy",
        async () => {
          if (!confirm(`Destroy session ${this.id}? Its files are deleted.`)) return;
          await api.destroy(this.id);
          navigate("/");
        },
        ".danger",
      ),
    );
    if (s.state === "failed") this.showBanner(s.error ?? "The session failed.");
    else if (s.state === "stopped") this.showBanner("The session is stopped: its files are kept. Start it to use the terminal and the agent.");
    else this.banner.hidden = true;
  }

  private showBanner(text: string): void {
    this.banner.hidden = false;
    replace(this.banner, text);
  }

  private show(t: TabName): void {
    const prev = this.tab;
    this.tab = t;
    for (const [name, b] of this.tabButtons) {
      b.setAttribute("aria-selected", String(name === t));
      b.classList.toggle("active", name === t);
    }
    for (const [name, p] of this.panes) p.hidden = name !== t;
    if (prev === "browser" && t !== "browser") this.browser.hide();
    history.replaceState(null, "", `#${t}`);
    switch (t) {
      case "terminal":
        this.terminal.show();
        break;
      case "browser":
        this.browser.show();
        break;
      case "services":
        this.services.show();
        break;
      case "files":
        this.files.show();
        break;
      default:
    }
  }

  private onKey(e: KeyboardEvent): void {
    if (!e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.code.startsWith("Digit")) {
      const d = Number(e.code.slice(5));
      if (d >= 1 && d <= TABS.length) {
        e.preventDefault();
        e.stopPropagation();
        this.show(TABS[d - 1]);
        return;
      }
      if (d === 0) {
        e.preventDefault();
        e.stopPropagation();
        this.chat.focus();
        return;
      }
    }
    if (e.code === "KeyC") {
      e.preventDefault();
      e.stopPropagation();
      this.chat.focus();
    }
  }
}

function label(t: TabName): string {
  return t[0].toUpperCase() + t.slice(1);
}
