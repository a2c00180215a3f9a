// Services of the session's machine and their logs, followed live (NDJSON
// from `/v1/sessions/{id}/services/{name}/logs?follow=true`). The list
// refreshes when the log says a service started or exited.

import { api, type LogLine, type ServiceInfo, type SessionEvent } from "./api";
import { h, notice, replace } from "./dom";

const MAX_LOG_CHARS = 400_000;

export class ServicesPane {
  readonly el: HTMLElement;
  private list = h("div.service-list", {}, notice("loading", "Loading services…"));
  private log = h("pre.service-log#service-log");
  private logHead = h("div.pane-head", {}, h("span.muted", {}, "Pick a service to follow its log."));
  private following: string | null = null;
  private abort: AbortController | null = null;
  private loaded = false;
  private disposed = false;

  constructor(private readonly session: string) {
    this.el = h("section.pane.services-pane", {}, h("div.pane-head", {}, h("strong", {}, "Services")), h("div.split", {}, this.list, h("div.log-wrap", {}, this.logHead, this.log)));
  }

  private running = true;
  private visible = false;

  show(): void {
    this.visible = true;
    if (!this.loaded) void this.refresh();
  }

  /** Follows the session's state: a stopped machine has no services to ask. */
  setRunning(running: boolean): void {
    if (running === this.running) return;
    this.running = running;
    if (!running) {
      this.abort?.abort();
      this.abort = null;
      this.following = null;
    }
    if (this.loaded || this.visible) void this.refresh();
  }

  dispose(): void {
    this.disposed = true;
    this.abort?.abort();
  }

  onEvent(e: SessionEvent): void {
    if ((e.type === "service_started" || e.type === "service_exited") && this.loaded) void this.refresh();
  }

  async refresh(): Promise<void> {
    this.loaded = true;
    if (!this.running) {
      replace(this.list, notice("empty", "The session is not running. Start it to see its services."));
      return;
    }
    let services: ServiceInfo[];
    try {
      services = await api.services(this.session);
    } catch (e) {
      replace(this.list, notice("error", (e as Error).message, h("button.small", { onclick: () => void this.refresh() }, "Retry")));
      return;
    }
    if (services.length === 0) {
      replace(
        this.list,
        notice("empty", "No services. The agent starts long-running processes (dev servers, workers) as services; so does", h("pre", {}, "POST /v1/sessions/{id}/services")),
      );
      return;
    }
    replace(
      this.list,
      h(
        "ul.items",
        {},
        services.map((s) =>
          h(
            "li",
            {},
            h(
              "button.item",
              { type: "button", class: s.name === this.following ? "active" : "", onclick: () => this.follow(s.name) },
              h("span", {}, s.name),
              h(`span.state.${s.state}`, {}, s.state),
              s.restarts ? h("span.muted", {}, ` ↻${s.restarts}`) : null,
            ),
          ),
        ),
      ),
    );
  }

  private follow(name: string): void {
    this.abort?.abort();
    const abort = new AbortController();
    this.abort = abort;
    this.following = name;
    replace(this.logHead, h("strong", {}, name), h("span.muted", {}, " log, followed live"));
    replace(this.log);
    void this.refresh();
    void (async () => {
      try {
        const resp = await api.serviceLogs(this.session, name, abort.signal);
        if (!resp.ok || !resp.body) {
          replace(this.log, `Could not read the log (${resp.status}).`);
          return;
        }
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let nl: number;
          while ((nl = buf.indexOf("\n")) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            if (!line) continue;
            try {
              const l = JSON.parse(line) as LogLine;
              this.append(l.text, l.stream === "stderr");
            } catch {
              // not a log line
            }
          }
        }
        this.append("\n[the log ended]\n", false);
      } catch (e) {
        if (abort.signal.aborted) return;
        // A drop (a daemon restart, the network): follow again, from the tail.
        this.append(`\n[the log stream dropped (${(e as Error).message}); reconnecting…]\n`, true);
        window.setTimeout(() => {
          if (this.abort === abort && !this.disposed) this.follow(name);
        }, 2000);
      }
    })();
  }

  private append(text: string, err: boolean): void {
    const stick = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
    this.log.appendChild(err ? h("span.stderr", {}, text) : document.createTextNode(text));
    while (this.log.textContent!.length > MAX_LOG_CHARS && this.log.firstChild) this.log.removeChild(this.log.firstChild);
    if (stick) this.log.scrollTop = this.log.scrollHeight;
  }
}
