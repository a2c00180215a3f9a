// The terminal tab: the shared `main` shell (always there, cannot be closed)
// and terminals of the person's own, each a PTY of the machine
// (`/v1/sessions/{id}/pty/<name>`), in tabs: "+" opens one, "×" closes one
// (`DELETE …/pty/<name>` kills its shell). The head shows the connection of
// the terminal in front.

import { ApiError, request } from "./api";
import { h, replace } from "./dom";
import { TerminalPane } from "./terminal";

type PtyListed = { name: string };

export class TerminalTabs {
  readonly el: HTMLElement;
  private views = new Map<string, TerminalPane>();
  private tabs = h("div.term-tabs", { role: "tablist", "aria-label": "Terminals" });
  private body = h("div.term-body");
  private statusSlot = h("span.term-status");
  private active = "main";
  private running = true;
  private visible = false;
  private listed = false;

  constructor(
    private readonly session: string,
    private readonly stillRunning: () => Promise<boolean>,
  ) {
    this.el = h(
      "section.pane.terminal-pane",
      {},
      h(
        "div.pane-head",
        {},
        h("strong", {}, "Terminal"),
        this.tabs,
        h("span.grow"),
        h("span.muted.term-hint", { title: "Copy: Ctrl+Shift+C, Cmd+C, or Ctrl+C with a selection. Paste: Ctrl+Shift+V, Ctrl+V or Cmd+V." }, "main is shared with the agent"),
        this.statusSlot,
      ),
      this.body,
    );
    this.add("main");
  }

  /** Opens the terminal in front once the pane is visible; finds the machine's other terminals once. */
  show(): void {
    this.visible = true;
    this.current().show();
    if (!this.listed && this.running) void this.list();
  }

  focus(): void {
    this.current().focus();
  }

  setRunning(running: boolean): void {
    this.running = running;
    for (const v of this.views.values()) v.setRunning(running);
    if (running && this.visible && !this.listed) void this.list();
  }

  dispose(): void {
    for (const v of this.views.values()) v.dispose();
  }

  private current(): TerminalPane {
    return this.views.get(this.active) ?? this.views.get("main")!;
  }

  /** Tabs for the terminals the machine has already (made in another window, say). */
  private async list(): Promise<void> {
    this.listed = true;
    try {
      const r = await request("GET", `/v1/sessions/${encodeURIComponent(this.session)}/pty`);
      const ptys = (await r.json()) as PtyListed[];
      for (const p of ptys) if (!this.views.has(p.name)) this.add(p.name);
    } catch {
      // the list is a convenience: main is there whatever happens
      this.listed = false;
    }
  }

  private add(name: string): TerminalPane {
    const view = new TerminalPane(this.session, this.stillRunning, name);
    view.setRunning(this.running);
    view.el.hidden = true;
    this.views.set(name, view);
    this.body.appendChild(view.el);
    this.drawTabs();
    if (name === "main") this.select("main");
    return view;
  }

  /** A name no terminal has: `term-2`, `term-3`, … */
  private freshName(): string {
    for (let i = 2; ; i++) {
      const n = `term-${i}`;
      if (!this.views.has(n)) return n;
    }
  }

  private open(): void {
    const name = this.freshName();
    this.add(name);
    this.select(name);
  }

  private async close(name: string): Promise<void> {
    if (name === "main") return;
    const view = this.views.get(name);
    if (!view) return;
    try {
      await request("DELETE", `/v1/sessions/${encodeURIComponent(this.session)}/pty/${encodeURIComponent(name)}`);
    } catch (e) {
      // A shell that is gone already (the session stopped) closes all the same.
      if (!(e instanceof ApiError) || (e.status !== 404 && e.status !== 409)) {
        this.statusSlot.append(h("span.term-error", { role: "alert" }, ` ${(e as Error).message}`));
        return;
      }
    }
    view.dispose();
    view.el.remove();
    this.views.delete(name);
    if (this.active === name) this.select("main");
    else this.drawTabs();
  }

  private select(name: string): void {
    this.active = name;
    for (const [n, v] of this.views) v.el.hidden = n !== name;
    replace(this.statusSlot, this.current().status);
    this.drawTabs();
    if (this.visible) {
      this.current().show();
    }
  }

  private drawTabs(): void {
    replace(
      this.tabs,
      [...this.views.keys()].map((name) =>
        h(
          "span.term-tab",
          { class: name === this.active ? "active" : "", "data-pty": name },
          h(
            "button.term-tab-name",
            { type: "button", role: "tab", "aria-selected": name === this.active ? "true" : "false", onclick: () => this.select(name) },
            name,
          ),
          name === "main"
            ? null
            : h("button.term-tab-close", { type: "button", title: `Close ${name} (its shell ends)`, "aria-label": `Close ${name}`, onclick: () => void this.close(name) }, "×"),
        ),
      ),
      h("button.term-new", { type: "button", title: "New terminal", "aria-label": "New terminal", onclick: () => this.open() }, "+"),
    );
  }
}
