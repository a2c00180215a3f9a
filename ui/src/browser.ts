// The agent's browser, watched live over `/v1/sessions/{id}/browser/live`:
// JSON messages `frame` (a JPEG screencast frame, base64), `page` (url and
// title) and `closed` (reason; "not started" while the agent has no browser).
// The socket stays open and frames come once a browser starts. A daemon
// without the route (the upgrade fails) shows that the view is unavailable
// and tries again later.

import { wsUrl } from "./api";
import { h, notice, replace } from "./dom";

export class BrowserPane {
  readonly el: HTMLElement;
  private img = h("img#browser-frame", { alt: "The agent's browser" });
  private url = h("span.mono.browser-url#browser-url");
  private body = h("div.browser-body");
  private ws: WebSocket | null = null;
  private retry = 0;
  private timer: number | undefined;
  private stopped = false;
  private visible = false;
  private objectUrl: string | null = null;

  constructor(private readonly session: string) {
    this.el = h(
      "section.pane.browser-pane",
      {},
      h("div.pane-head", {}, h("strong", {}, "Browser"), h("span.muted", {}, "what the agent's Chromium shows, live"), h("span.grow"), this.url),
      this.body,
    );
    this.state("loading", "Connecting to the live view…");
  }

  /** Connects while the pane is shown; frames are not worth fetching unseen. */
  show(): void {
    this.visible = true;
    if (!this.ws) this.connect();
  }

  hide(): void {
    this.visible = false;
    window.clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    ws?.close();
  }

  dispose(): void {
    this.stopped = true;
    this.hide();
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
  }

  private state(kind: "loading" | "empty" | "error", text: string): void {
    replace(this.body, notice(kind, text));
    this.body.dataset.state = kind === "empty" ? "not-started" : kind;
  }

  private connect(): void {
    if (this.stopped || !this.visible) return;
    const ws = new WebSocket(wsUrl(`/v1/sessions/${encodeURIComponent(this.session)}/browser/live`));
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.retry = 0;
    };
    ws.onmessage = (m) => {
      let msg: { type: string; [k: string]: unknown };
      try {
        msg = JSON.parse(m.data as string);
      } catch {
        return;
      }
      if (msg.type === "frame") {
        this.frame(msg.data as string, msg.url as string | undefined);
      } else if (msg.type === "page") {
        replace(this.url, String(msg.title || msg.url || ""));
        this.url.title = String(msg.url ?? "");
      } else if (msg.type === "closed") {
        const reason = String(msg.reason ?? "");
        this.state("empty", reason === "not started" ? "The agent has not started its browser yet. It appears here, live, when the agent opens a page." : `The browser is not running (${reason}).`);
        replace(this.url);
      }
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (!opened) {
        this.state("empty", "The live view is not available from this daemon yet. The agent's browser appears here once it is.");
      } else {
        this.state("loading", "The live view dropped; reconnecting…");
      }
      const delay = Math.min(30000, 1000 * 2 ** this.retry++);
      this.timer = window.setTimeout(() => this.connect(), delay);
    };
  }

  private frame(b64: string, url?: string): void {
    const bin = atob(b64);
    const buf = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) buf[i] = bin.charCodeAt(i);
    const next = URL.createObjectURL(new Blob([buf], { type: "image/jpeg" }));
    this.img.src = next;
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
    this.objectUrl = next;
    if (!this.img.isConnected) replace(this.body, this.img);
    this.body.dataset.state = "live";
    if (url) replace(this.url, url);
  }
}
