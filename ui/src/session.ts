// A session's page: the agent chat on the left; terminal, preview, browser,
// services, files and timeline as tabs on the right. One event stream feeds
// them all, resuming from its cursor after a drop.
//
// Keys: Alt+1…6 switch tabs, Alt+0 (or Alt+C) focuses the chat. The layout
// (splitter, collapsible chat, phone views) is `layout.ts`'s; the page adds
// its commands to the palette (`palette.ts`) while it is open.

import { ApiError, api, type Session } from "./api";
import { BrowserPane } from "./browser";
import { Chat } from "./chat";
import { age, h, notice, replace } from "./dom";
import { EventStream } from "./events";
import type { FileLink } from "./file-links";
import { FilesPane } from "./files";
import { notFoundPage, topbarTools, Workspace } from "./layout";
import { navigate, type Page } from "./main";
import { notifyEvent } from "./notify";
import { type Command, registerCommands } from "./palette";
import { PreviewPane } from "./preview";
import { SessionHeader } from "./sessionheader";
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
  private info: SessionHeader;
  private session: Session | null = null;
  private keys = (e: KeyboardEvent) => this.onKey(e);
  private disposed = false;
  private layout: Workspace | null = null;
  private unregister: () => void = () => {};
  /** Over the terminal while the session is not running: says so, with Start. */
  private stoppedOverlay = h(
    "div.pane-overlay#terminal-stopped",
    { hidden: true },
    h("p", {}, "The session is not running, so it has no shell."),
    h("button.primary#terminal-start", {
      type: "button",
      onclick: (e: Event) => {
        const b = e.currentTarget as HTMLButtonElement;
        b.disabled = true; // one start at a time
        void this.act(() => api.start(this.id)).finally(() => (b.disabled = false));
      },
    }, "Start the session"),
  );

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
    this.info = new SessionHeader(id, (s) => this.setSession(s));
    this.files.onDirty = (dirty) => this.tabButtons.get("files")?.classList.toggle("dirty", dirty);
    replace(root, h("div.page", {}, this.header(), notice("loading", "Loading the session…")));
    // Capture: the terminal would otherwise take Alt+digit for itself.
    document.addEventListener("keydown", this.keys, true);
    root.addEventListener("firepit:open-file", this.openFile);
    void this.load();
  }

  dispose(): void {
    this.disposed = true;
    this.unregister();
    this.layout?.dispose();
    document.removeEventListener("keydown", this.keys, true);
    this.stream?.close();
    this.terminal.dispose();
    this.browser.dispose();
    this.services.dispose();
    this.info.dispose();
    this.preview.dispose();
    this.files.dispose();
    this.root.removeEventListener("firepit:open-file", this.openFile);
  }

  /** A file link (a problem's traceback) was followed: the Files tab opens it. */
  private openFile = (e: Event) => {
    const { path, line } = (e as CustomEvent<FileLink>).detail;
    this.show("files");
    void this.files.openAt(path, line);
  };

  private header(): HTMLElement {
    return h(
      "header.topbar",
      {},
      h("a.brand", { href: "/", "data-link": true }, "firepit"),
      h("a.crumb", { href: "/", "data-link": true }, "Sessions"),
      h("span.crumb.mono#session-id", {}, this.id),
      this.info.el,
      this.state,
      h("span.grow"),
      this.conn,
      this.services.runButton,
      this.actions,
      topbarTools(),
    );
  }

  private async load(): Promise<void> {
    let s: Session;
    try {
      s = await api.session(this.id);
    } catch (e) {
      if (this.disposed) return;
      const missing = e instanceof ApiError && e.status === 404;
      if (missing) document.title = "No such session · firepit";
      replace(
        this.root,
        h(
          "div.page",
          {},
          this.header(),
          missing
            ? notFoundPage("No such session", `There is no session ${this.id}. It may have been destroyed, or the link is mistyped.`)
            : notice("error", (e as Error).message, h("a", { href: "/", "data-link": true }, "Back to the sessions")),
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
      const wrap = h("div.tabpanel", { role: "tabpanel", id: `panel-${t}`, hidden: true }, el, t === "terminal" ? this.stoppedOverlay : null);
      this.panes.set(t, wrap);
      right.appendChild(wrap);
    }
    this.layout = new Workspace(this.chat.el, right);
    replace(this.root, h("div.page", {}, this.header(), this.banner, this.layout.el));
    this.setSession(s);
    this.unregister = registerCommands(...this.commands());

    let replayUntil = 0;
    try {
      const status = await api.agent(this.id);
      this.chat.applyStatus(status);
      this.layout.setModelConfigured(status.configured);
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
    stream.on((e, live) => {
      notifyEvent(this.id, e, live);
      this.chat.onEvent(e);
      this.preview.onEvent(e);
      this.services.onEvent(e);
      this.files.onEvent(e);
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
    this.info.set(s);
    const running = s.state === "running";
    this.terminal.setRunning(running);
    this.preview.setRunning(running);
    this.services.setRunning(running);
    this.files.setRunning(running);
    replace(this.state, s.state);
    this.state.className = `state ${s.state}`;
    this.state.title = `${s.image} image, made ${age(s.created_at)} ago`;
    this.stoppedOverlay.hidden = running || s.state === "creating";
    const act = (text: string, f: () => Promise<unknown>, cls = "") =>
      h(`button.small${cls}`, { type: "button", onclick: () => void this.act(f) }, text);
    replace(
      this.actions,
      s.state === "running" ? act("Stop", () => this.stopSession()) : null,
      s.state === "stopped" || s.state === "failed" ? act("Start", () => api.start(this.id)) : null,
      act("Destroy", () => this.destroySession(), ".danger"),
    );
    if (s.state === "failed") this.showBanner(s.error ?? "The session failed.");
    else if (s.state === "stopped") this.showBanner("The session is stopped: its files are kept. Start it to use the terminal and the agent.");
    else this.banner.hidden = true;
  }

  /** Runs an action on the session, then shows its state (or the error). */
  private async act(f: () => Promise<unknown>): Promise<void> {
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
  }

  private async stopSession(): Promise<void> {
    // Let go of the shell first: it goes away with the machine.
    this.terminal.setRunning(false);
    await api.stop(this.id);
  }

  private async destroySession(): Promise<void> {
    if (!confirm(`Destroy session ${this.id}? Its files are deleted.`)) return;
    await api.destroy(this.id);
    navigate("/");
  }

  /** What this page adds to the command palette. */
  private commands(): Command[] {
    const state = () => this.session?.state;
    return [
      ...TABS.map((t, i) => ({
        id: `session.tab.${t}`,
        title: `Go to ${label(t)}`,
        group: "Tabs",
        keys: `Alt+${i + 1}`,
        run: () => this.show(t),
      })),
      { id: "session.chat.focus", title: "Focus the agent chat", group: "Chat", keys: "Alt+0", run: () => this.focusChat() },
      { id: "session.chat.toggle", title: "Toggle the agent chat", group: "Chat", keys: "Alt+\\", run: () => this.layout?.toggleChat() },
      { id: "session.start", title: "Start the session", group: "Session", when: () => state() === "stopped" || state() === "failed", run: () => this.act(() => api.start(this.id)) },
      { id: "session.stop", title: "Stop the session", group: "Session", when: () => state() === "running", run: () => this.act(() => this.stopSession()) },
      { id: "session.destroy", title: "Destroy the session", group: "Session", run: () => this.act(() => this.destroySession()) },
    ];
  }

  private focusChat(): void {
    this.layout?.openChat();
    this.chat.focus();
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
    this.layout?.showView("work");
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
        this.focusChat();
        return;
      }
    }
    if (e.code === "KeyC") {
      e.preventDefault();
      e.stopPropagation();
      this.focusChat();
    } else if (e.code === "Backslash") {
      e.preventDefault();
      e.stopPropagation();
      this.layout?.toggleChat();
    }
  }
}

function label(t: TabName): string {
  return t[0].toUpperCase() + t.slice(1);
}
