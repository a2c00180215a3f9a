// The preview pane: the app a session serves, framed from its preview URL
// (`http://<port>-<session>.<domain>/`), with a port picker, a URL bar,
// reload, open in a new tab, and Share (a signed, expiring link, copied).

import { api, type Port, type SessionEvent } from "./api";
import { h, notice, replace } from "./dom";

export class PreviewPane {
  readonly el: HTMLElement;
  private ports = new Map<number, Port>();
  private selected: number | null = null;
  private picker = h("select#preview-port", { "aria-label": "Port" });
  private url = h("input#preview-url", { "aria-label": "Preview URL", spellcheck: false });
  private open = h("a.button.small#preview-open", { target: "_blank", rel: "noopener", title: "Open in a new tab" }, "Open ↗");
  private shareBtn = h("button.small#preview-share", { type: "button", title: "Make a signed link that anyone can open for an hour" }, "Share");
  private shareOut = h("div.share-out", { hidden: true });
  private body = h("div.preview-body");
  private frame: HTMLIFrameElement | null = null;
  private running = true;

  constructor(private readonly session: string) {
    const reload = h("button.small#preview-reload", { type: "button", title: "Reload" }, "↻");
    reload.addEventListener("click", () => this.load());
    this.picker.addEventListener("change", () => this.select(Number(this.picker.value)));
    this.url.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        this.load();
      }
    });
    this.shareBtn.addEventListener("click", () => void this.share());
    this.el = h(
      "section.pane.preview-pane",
      {},
      h("div.pane-head.toolbar", {}, this.picker, this.url, reload, this.open, this.shareBtn),
      this.shareOut,
      this.body,
    );
    this.render();
  }

  /** Loads the listening ports (the log's port events keep them current after). */
  async refresh(): Promise<void> {
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
    this.url.value = p.url;
    replace(this.shareOut);
    this.shareOut.hidden = true;
    this.load();
  }

  /** Frames the URL in the bar (kept on the selected port's preview host). */
  private load(): void {
    if (this.selected === null) return;
    const base = this.ports.get(this.selected)!.url;
    let target = base;
    try {
      const typed = new URL(this.url.value, base);
      const origin = new URL(base).origin;
      target = typed.origin === origin ? typed.href : base;
    } catch {
      // not a URL: the port's root
    }
    this.url.value = target;
    this.open.href = target;
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
    // Setting src navigates, and reloads when it is unchanged.
    this.frame.src = target;
  }

  private async share(): Promise<void> {
    if (this.selected === null) return;
    this.shareBtn.disabled = true;
    try {
      const s = await api.share(this.session, this.selected);
      const field = h("input#share-url", { readonly: true, value: s.url, "aria-label": "Share link" });
      let copied = "Copied to the clipboard.";
      try {
        await navigator.clipboard.writeText(s.url);
      } catch {
        copied = "Select it and copy.";
      }
      const expires = new Date(s.expires_at * 1000).toLocaleString();
      replace(this.shareOut, h("span", {}, `Share link (expires ${expires}; revoke with firepit unshare ${this.session} ${s.id}). ${copied}`), field);
      this.shareOut.hidden = false;
      field.select();
    } catch (e) {
      replace(this.shareOut, h("span.form-error", {}, (e as Error).message));
      this.shareOut.hidden = false;
    } finally {
      this.shareBtn.disabled = false;
    }
  }
}
