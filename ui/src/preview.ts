// The preview pane: the app a session serves, framed from its preview host
// (`http://<port>-<session>.<domain>/`), with a port picker, back and
// forward, a URL bar that follows the app, reload, open in a new tab,
// Share (signed links with a lifetime, listed and revocable: `shares.ts`),
// and the switch for the pages' error reports (`preview-reports.ts`).
//
// The app is on its own origin, so this page cannot read where it is. It is
// framed through the preview host's frame page (`/__firepit/frame?path=…`,
// served by the daemon on the app's origin, see `firepit_preview::frame`),
// which sees the app's location and posts it here (`preview-location`), and
// takes `go`, `back`, `forward` and `reload` from here. Messages are taken
// only from that frame's window and the preview's origin, and a reported
// path is only shown, never followed outside the preview host.

import { api, type Port, type SessionEvent } from "./api";
import { h, notice, replace } from "./dom";
import { PreviewReportsSwitch } from "./preview-reports";
import { SharesPanel } from "./shares";

/** What the frame page reports. */
interface Location {
  firepit: "preview-location";
  path: string;
  title: string;
  canGoBack: boolean | null;
  canGoForward: boolean | null;
}

export class PreviewPane {
  readonly el: HTMLElement;
  private ports = new Map<number, Port>();
  private selected: number | null = null;
  private picker = h("select#preview-port", { "aria-label": "Port" });
  private url = h("input#preview-url", { "aria-label": "Preview URL", spellcheck: false });
  private back = h("button.small#preview-back", { type: "button", title: "Back", disabled: true }, "←");
  private forward = h("button.small#preview-forward", { type: "button", title: "Forward", disabled: true }, "→");
  private open = h("a.button.small#preview-open", { target: "_blank", rel: "noopener", title: "Open in a new tab" }, "Open ↗");
  private shareBtn = h("button.small#preview-share", { type: "button", title: "Share this page: a signed link with a lifetime; lists the links made" }, "Share");
  private shares: SharesPanel;
  private reports: PreviewReportsSwitch;
  private reportsRead = false;
  private body = h("div.preview-body");
  private frame: HTMLIFrameElement | null = null;
  private frameOrigin = "";
  /** The app's path now, as the frame page last said. */
  private path = "/";
  private running = true;
  /** Whether the frame page has reported since the frame was last loaded:
   * until then a message to it is lost (its window is not yet on its origin). */
  private frameReady = false;
  private onMessage = (e: MessageEvent) => this.message(e);

  constructor(private readonly session: string) {
    const reload = h("button.small#preview-reload", { type: "button", title: "Reload" }, "↻");
    reload.addEventListener("click", () => (this.frameReady && this.post({ firepit: "reload" })) || this.load());
    this.back.addEventListener("click", () => this.post({ firepit: "back" }));
    this.forward.addEventListener("click", () => this.post({ firepit: "forward" }));
    this.picker.addEventListener("change", () => this.select(Number(this.picker.value)));
    this.url.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        this.go();
      }
    });
    this.shares = new SharesPanel(session);
    this.reports = new PreviewReportsSwitch(session);
    this.shareBtn.addEventListener("click", () => {
      if (this.selected !== null) this.shares.toggle(this.selected, this.path);
    });
    window.addEventListener("message", this.onMessage);
    this.el = h(
      "section.pane.preview-pane",
      {},
      h("div.pane-head.toolbar", {}, this.picker, this.back, this.forward, this.url, reload, this.open, this.shareBtn, this.reports.el),
      this.shares.el,
      this.body,
    );
    this.render();
  }

  dispose(): void {
    window.removeEventListener("message", this.onMessage);
  }

  /** Loads the listening ports (the log's port events keep them current after). */
  async refresh(): Promise<void> {
    if (!this.reportsRead) {
      // Once the session is known to be there; its events keep it current.
      this.reportsRead = true;
      void this.reports.load();
    }
    if (!this.running) return;
    try {
      for (const p of await api.ports(this.session)) this.ports.set(p.port, p);
    } catch {
      // a stopped session has no ports; the events say when they open
    }
    this.render();
  }

  /** Follows the session's state: ports are asked for again when it runs. */
  setRunning(running: boolean): void {
    if (running === this.running) return;
    this.running = running;
    if (running) void this.refresh();
  }

  onEvent(e: SessionEvent): void {
    this.reports.onEvent(e);
    if (e.type === "port_opened") {
      this.ports.set(e.port as number, { port: e.port as number, addr: e.addr as string, url: e.url as string });
      this.render();
    } else if (e.type === "port_closed") {
      this.ports.delete(e.port as number);
      this.render();
    } else if (e.type === "session_state" && e.state !== "running") {
      this.ports.clear();
      this.render();
    }
  }

  private render(): void {
    const ports = [...this.ports.values()].sort((a, b) => a.port - b.port);
    replace(this.picker, ports.length ? ports.map((p) => h("option", { value: p.port }, `:${p.port}`)) : h("option", { value: "" }, "no ports"));
    const disabled = ports.length === 0;
    this.picker.disabled = disabled;
    this.url.disabled = disabled;
    this.shareBtn.disabled = disabled;
    this.open.classList.toggle("disabled", disabled);
    if (disabled) {
      this.selected = null;
      this.frame = null;
      this.frameOrigin = "";
      this.back.disabled = true;
      this.forward.disabled = true;
      this.shares.hide();
      this.url.value = "";
      this.open.removeAttribute("href");
      replace(
        this.body,
        notice(
          "empty",
          "No port is listening yet. Start a server in the terminal and its preview appears here:",
          h("pre", {}, "python3 -m http.server 8000"),
        ),
      );
      return;
    }
    if (this.selected === null || !this.ports.has(this.selected)) {
      this.select(ports[ports.length - 1].port);
    } else {
      this.picker.value = String(this.selected);
    }
  }

  private select(port: number): void {
    const p = this.ports.get(port);
    if (!p) return;
    this.selected = port;
    this.picker.value = String(port);
    this.shares.hide();
    this.path = "/";
    this.load();
  }

  /** The selected port's preview origin (`http://8000-abc.localhost:7777`). */
  private origin(): string {
    return this.selected === null ? "" : new URL(this.ports.get(this.selected)!.url).origin;
  }

  /** Frames the frame page at the app's path `this.path`. */
  private load(): void {
    if (this.selected === null) return;
    const origin = this.origin();
    this.showUrl(origin + this.path);
    if (!this.frame) {
      // The app is someone's code (the agent's, a dependency's): framed in a
      // sandbox. `allow-same-origin` lets it keep its own origin, the
      // preview host's (`<port>-<session>.<domain>`), which is a different
      // origin from this page's, so it still cannot reach the UI; without it
      // the app would get an opaque origin and lose its cookies and storage.
      // No `allow-top-navigation`: it cannot navigate the UI away.
      this.frame = h("iframe#preview-frame", {
        title: `Preview of port ${this.selected}`,
        sandbox:
          "allow-scripts allow-forms allow-same-origin allow-popups allow-popups-to-escape-sandbox allow-modals allow-downloads",
      });
      replace(this.body, this.frame);
    }
    this.frameOrigin = origin;
    this.frameReady = false;
    this.back.disabled = true;
    this.forward.disabled = true;
    // Setting src navigates, and reloads when it is unchanged.
    this.frame.src = `${origin}/__firepit/frame?path=${encodeURIComponent(this.path)}`;
  }

  /** Goes where the URL bar says, kept on the selected port's preview host. */
  private go(): void {
    if (this.selected === null) return;
    const origin = this.origin();
    let path = "/";
    try {
      const typed = new URL(this.url.value, origin + "/");
      if (typed.origin === origin) path = typed.pathname + typed.search + typed.hash;
    } catch {
      // not a URL: the port's root
    }
    this.path = path;
    this.showUrl(origin + path);
    // A frame page still loading would lose the message: frame the path anew.
    if (!this.frameReady || !this.post({ firepit: "go", path })) this.load();
  }

  /** Sends the frame page a message; false when there is no frame to send to. */
  private post(m: Record<string, unknown>): boolean {
    const w = this.frame?.contentWindow;
    if (!w || !this.frameOrigin) return false;
    w.postMessage(m, this.frameOrigin);
    return true;
  }

  private showUrl(href: string): void {
    if (document.activeElement !== this.url) this.url.value = href;
    this.open.href = href;
  }

  /** A location report from the frame page (and nothing else). */
  private message(e: MessageEvent): void {
    if (!this.frame || e.source !== this.frame.contentWindow || e.origin !== this.frameOrigin) return;
    const m = e.data as Partial<Location> | null;
    if (!m || m.firepit !== "preview-location" || typeof m.path !== "string" || !m.path.startsWith("/")) return;
    this.frameReady = true;
    this.path = m.path;
    this.showUrl(this.frameOrigin + m.path);
    this.back.disabled = m.canGoBack !== true;
    this.forward.disabled = m.canGoForward !== true;
    if (typeof m.title === "string") this.frame.title = m.title ? `Preview: ${m.title}` : `Preview of port ${this.selected}`;
  }
}
