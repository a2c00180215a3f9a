// Services of the session's machine and their logs, followed live (NDJSON
// from `/v1/sessions/{id}/services/{name}/logs?follow=true`). The list
// refreshes when the log says a service started or exited. Services are kept
// with the session (they start again with it): each can be started, stopped,
// restarted, forgotten and its log cleared here; "New service" adds one. The
// service named `run` is the project's run command: the Run button (`runButton`,
// in the session's header) restarts it, or asks for its command the first time.

import "./ide-services.css";
import { api, request, type LogLine, type RestartPolicy, type ServiceInfo, type ServiceSpec, type SessionEvent } from "./api";
import { h, notice, replace } from "./dom";

/** The project's run command's service. */
export const RUN = "run";

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

  private form = h("form.service-form#service-form", { hidden: true });
  /** The Run button, for the session's header. */
  readonly runButton: HTMLButtonElement;

  /** `reveal` brings the services tab to the front (to ask for the run command). */
  constructor(
    private readonly session: string,
    private readonly reveal: () => void = () => {},
  ) {
    this.runButton = h("button.small.run#run-button", { type: "button", title: "Run the project (the service `run`; restarts it if it runs)", onclick: () => void this.run() }, "▶ Run");
    this.el = h(
      "section.pane.services-pane",
      {},
      h(
        "div.pane-head",
        {},
        h("strong", {}, "Services"),
        h("span.muted.services-hint", {}, "kept with the session: they start again when it does"),
        h("span.grow"),
        h("button.small#new-service", { type: "button", onclick: () => this.openForm() }, "New service"),
      ),
      this.form,
      h("div.split", {}, this.list, h("div.log-wrap", {}, this.logHead, this.log)),
    );
  }

  private path(name?: string, rest = ""): string {
    const base = `/v1/sessions/${encodeURIComponent(this.session)}/services`;
    return name === undefined ? base : `${base}/${encodeURIComponent(name)}${rest}`;
  }

  /** Runs an action on a service, showing its failure in the list's place. */
  private async act(f: () => Promise<unknown>): Promise<void> {
    try {
      await f();
    } catch (e) {
      replace(this.list, notice("error", (e as Error).message, h("button.small", { onclick: () => void this.refresh() }, "Back")));
      return;
    }
    await this.refresh();
  }

  /** The Run button: restarts (or starts) the service `run`, or asks for its command. */
  async run(): Promise<void> {
    let services: ServiceInfo[];
    try {
      services = await api.services(this.session);
    } catch (e) {
      this.reveal();
      replace(this.list, notice("error", (e as Error).message));
      return;
    }
    const run = services.find((s) => s.name === RUN);
    if (!run) {
      this.reveal();
      this.openForm(RUN);
      return;
    }
    await this.act(() => request("POST", this.path(RUN, "/restart")));
    this.follow(RUN);
  }

  /** The form for a new service (`name` filled in: the run command's). */
  openForm(name = ""): void {
    const nameIn = h("input#service-name", { name: "name", required: true, maxlength: 64, value: name, placeholder: "web", autocomplete: "off" });
    const cmdIn = h("input#service-command", { name: "command", required: true, placeholder: "npm run dev", autocomplete: "off" });
    const cwdIn = h("input#service-cwd", { name: "cwd", placeholder: "/workspace (default: the image's)", autocomplete: "off" });
    const restart = h(
      "select#service-restart",
      { name: "restart" },
      h("option", { value: "on_failure" }, "when it fails"),
      h("option", { value: "always" }, "always"),
      h("option", { value: "never" }, "never"),
    );
    const error = h("div.form-error", { role: "alert" });
    replace(
      this.form,
      h("label", { for: "service-name" }, "Name"),
      nameIn,
      h("label", { for: "service-command" }, "Command"),
      cmdIn,
      h("label", { for: "service-cwd" }, "Directory"),
      cwdIn,
      h("label", { for: "service-restart" }, "Restart"),
      restart,
      error,
      h(
        "div.form-actions",
        {},
        h("button.small.primary#service-submit", { type: "submit" }, name === RUN ? "Save and run" : "Start"),
        h("button.small", { type: "button", onclick: () => (this.form.hidden = true) }, "Cancel"),
        name === RUN ? h("span.muted", {}, "The run command: the Run button restarts it.") : null,
      ),
    );
    this.form.onsubmit = async (ev) => {
      ev.preventDefault();
      const spec: ServiceSpec = {
        name: nameIn.value.trim(),
        command: { shell: cmdIn.value },
        env: [],
        cwd: cwdIn.value.trim() || null,
        restart: restart.value as RestartPolicy,
      };
      try {
        await request("POST", this.path(), JSON.stringify(spec));
      } catch (e) {
        replace(error, (e as Error).message);
        return;
      }
      this.form.hidden = true;
      await this.refresh();
      this.follow(spec.name);
    };
    this.form.hidden = false;
    (name ? cmdIn : nameIn).focus();
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
      // A stopped session still lists the services kept with it.
      let kept: ServiceInfo[] = [];
      try {
        kept = await api.services(this.session);
      } catch {
        // The notice below says what to do.
      }
      if (kept.length === 0) {
        replace(this.list, notice("empty", "The session is not running. Start it to see its services."));
        return;
      }
      replace(
        this.list,
        h(
          "div.kept-services",
          {},
          notice("empty", "The session is not running. These services are kept with it; the ones that ran when it stopped start again when it starts."),
          h(
            "ul.items",
            {},
            kept.map((s) =>
              h(
                "li.service-row",
                { "data-service": s.name },
                h("span.item", {}, h("span", {}, s.name), h("span.muted", {}, ` ${"shell" in s.spec.command ? s.spec.command.shell : s.spec.command.argv.join(" ")}`)),
              ),
            ),
          ),
        ),
      );
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
        notice(
          "empty",
          "No services yet. A service is a long-running process (a dev server, a worker) that starts again with the session; the agent starts them too. The one named `run` is the project's run command (the Run button).",
          h("button.small", { type: "button", onclick: () => this.openForm() }, "New service"),
          h("button.small", { type: "button", onclick: () => this.openForm(RUN) }, "Set the run command"),
        ),
      );
      return;
    }
    replace(
      this.list,
      h(
        "ul.items",
        {},
        services.map((s) => {
          const runs = s.state === "running" || s.state === "backoff";
          const act = (label: string, title: string, f: () => Promise<unknown>) =>
            h("button.small", { type: "button", title, "data-action": label.toLowerCase(), onclick: () => void this.act(f) }, label);
          return h(
            "li.service-row",
            { "data-service": s.name },
            h(
              "button.item",
              { type: "button", class: s.name === this.following ? "active" : "", onclick: () => this.follow(s.name) },
              h("span", {}, s.name),
              h(`span.state.${s.state}`, {}, s.state),
              s.restarts ? h("span.muted", {}, ` ↻${s.restarts}`) : null,
            ),
            h(
              "span.service-actions",
              {},
              runs
                ? act("Stop", "Stop it (kept; it no longer starts with the session)", () => request("DELETE", this.path(s.name)))
                : act("Start", "Start it again", () => request("POST", this.path(s.name, "/start"))),
              act("Restart", "Stop it if it runs and start it again", () => request("POST", this.path(s.name, "/restart"))),
              act("Forget", "Stop it and forget it", async () => {
                if (!confirm(`Forget the service ${s.name}? It stops and no longer starts with the session.`)) return;
                await request("DELETE", `${this.path(s.name)}?forget=true`);
              }),
            ),
          );
        }),
      ),
    );
  }

  private follow(name: string): void {
    this.abort?.abort();
    const abort = new AbortController();
    this.abort = abort;
    this.following = name;
    replace(
      this.logHead,
      h("strong", {}, name),
      h("span.muted", {}, " log, followed live"),
      h("span.grow"),
      h(
        "button.small#clear-log",
        {
          type: "button",
          title: "Empty this service's log (its process runs on)",
          onclick: async () => {
            try {
              await request("DELETE", this.path(name, "/logs"));
              if (this.following === name) replace(this.log);
            } catch (e) {
              this.append(`\n[${(e as Error).message}]\n`, true);
            }
          },
        },
        "Clear log",
      ),
    );
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
