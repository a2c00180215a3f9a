// One PTY in xterm.js over `/v1/sessions/{id}/pty/<name>` (the shared shell is
// `main`; `terminals.ts` holds the tabs): binary frames carry terminal bytes
// both ways, text frames resize. On a drop it reconnects and the daemon
// replays the scrollback into a cleared screen. Copy and paste keys are
// `clipboard.ts`'s.

import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import { type PtyControl, wsUrl } from "./api";
import { clipboardKeys } from "./clipboard";
import { h, replace } from "./dom";
import { followTheme, terminalTheme } from "./terminal-theme";

export class TerminalPane {
  readonly el: HTMLElement;
  private term: Terminal | null = null;
  private fit = new FitAddon();
  private ws: WebSocket | null = null;
  readonly host: HTMLElement;
  /** The connection's state, shown by the tabs for the terminal in front. */
  readonly status = h("span.conn-status");
  private retry = 0;
  private timer: number | undefined;
  private stopped = false;
  private observer: ResizeObserver | null = null;
  private encoder = new TextEncoder();
  /** Whether the session's machine runs (a stopped one has no shell to attach to). */
  private running = true;
  /** Stops following the page's theme. */
  private unfollow = () => {};

  /**
   * `stillRunning` asks whether the session's machine runs before a
   * reconnect, so a machine that stopped is not dialled again and again.
   */
  constructor(
    private readonly session: string,
    private readonly stillRunning: () => Promise<boolean>,
    readonly name = "main",
  ) {
    this.host = name === "main" ? h("div.term-host#terminal") : h("div.term-host", { "data-pty": name });
    this.el = this.host;
  }

  /** Opens the terminal once the pane is in the document and visible. */
  show(): void {
    if (!this.term) {
      this.term = new Terminal({
        cursorBlink: true,
        fontFamily: "ui-monospace, 'JetBrains Mono', Menlo, Consolas, monospace",
        fontSize: 13,
        scrollback: 10000,
        theme: terminalTheme(),
      });
      this.unfollow = followTheme(this.term);
      this.term.loadAddon(this.fit);
      this.term.open(this.host);
      this.term.attachCustomKeyEventHandler(clipboardKeys(this.term));
      this.term.onData((d) => this.sendBytes(this.encoder.encode(d)));
      this.term.onBinary((d) => this.sendBytes(Uint8Array.from(d, (c) => c.charCodeAt(0))));
      this.term.onResize(({ cols, rows }) => this.sendResize(cols, rows));
      this.observer = new ResizeObserver(() => this.refit());
      this.observer.observe(this.host);
      if (this.running) this.connect();
      else this.setStatus("session not running", "pending");
    }
    this.refit();
    this.term.focus();
  }

  focus(): void {
    this.term?.focus();
  }

  /** Follows the session's state: attach while it runs, let go when it stops. */
  setRunning(running: boolean): void {
    if (running === this.running) return;
    this.running = running;
    if (!this.term) return;
    window.clearTimeout(this.timer);
    if (running) {
      this.retry = 0;
      this.connect();
    } else {
      const ws = this.ws;
      this.ws = null;
      ws?.close();
      this.setStatus("session not running", "pending");
      this.term.write("\r\n\x1b[2m[the session stopped; the shell comes back when it starts]\x1b[0m\r\n");
    }
  }

  dispose(): void {
    this.stopped = true;
    window.clearTimeout(this.timer);
    this.observer?.disconnect();
    this.unfollow();
    this.ws?.close();
    this.term?.dispose();
  }

  private refit(): void {
    if (!this.term || this.host.clientWidth === 0) return;
    try {
      this.fit.fit();
    } catch {
      // not laid out yet
    }
  }

  private setStatus(text: string, cls: string): void {
    replace(this.status, text);
    this.status.className = `conn-status ${cls}`;
  }

  private connect(): void {
    if (this.stopped || !this.running) return;
    this.setStatus(this.retry ? "reconnecting…" : "connecting…", "pending");
    const ws = new WebSocket(wsUrl(`/v1/sessions/${encodeURIComponent(this.session)}/pty/${encodeURIComponent(this.name)}`));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let first = true;
    ws.onopen = () => {
      this.retry = 0;
      this.setStatus("connected", "ok");
      if (this.term) this.sendResize(this.term.cols, this.term.rows);
    };
    ws.onmessage = (m) => {
      if (!this.term) return;
      if (typeof m.data === "string") {
        try {
          const c = JSON.parse(m.data) as PtyControl;
          if (c.type === "exit") this.term.write(`\r\n\x1b[2m[the shell exited; a new one starts on reconnect]\x1b[0m\r\n`);
        } catch {
          // unknown control message
        }
        return;
      }
      if (first) {
        // The scrollback comes first: draw it on a clean screen.
        this.term.reset();
        first = false;
      }
      this.term.write(new Uint8Array(m.data as ArrayBuffer));
    };
    ws.onclose = () => {
      if (this.ws !== ws || this.stopped) return;
      this.ws = null;
      this.setStatus("disconnected, retrying", "bad");
      const delay = Math.min(5000, 300 * 2 ** this.retry++);
      this.timer = window.setTimeout(async () => {
        let running = true;
        try {
          running = await this.stillRunning();
        } catch {
          // the daemon is away: dial again, it may be restarting
        }
        if (running) this.connect();
        else this.setRunning(false);
      }, delay);
    };
  }

  private sendBytes(b: Uint8Array): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(b);
  }

  private sendResize(cols: number, rows: number): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "resize", cols, rows } satisfies PtyControl));
  }
}
