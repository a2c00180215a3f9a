// The sessions list: state, image, age and open ports of each session; new
// session (image, limits, network); stop, start, destroy.

import { ApiError, api, type Image, type Port, type Session } from "./api";
import { age, bytes, h, notice, replace } from "./dom";
import { topbarTools } from "./layout";
import { navigate, type Page } from "./main";
import { registerCommands } from "./palette";

const REFRESH_MS = 3000;

export class SessionsPage implements Page {
  private list = h("div.list", {}, notice("loading", "Loading sessions…"));
  private error = h("div.banner", { hidden: true });
  private timer: number | undefined;
  private disposed = false;
  private busy = new Set<string>();
  private dialog: HTMLDialogElement | null = null;
  /** Removes the palette's "Open session …" commands of the last listing. */
  private unregister: () => void = () => {};
  private keys = (e: KeyboardEvent) => {
    if (e.key === "n" && !isTyping(e)) {
      e.preventDefault();
      void this.openNew();
    }
  };

  constructor(root: HTMLElement) {
    document.title = "Sessions · firepit";
    replace(
      root,
      h(
        "div.page",
        {},
        h(
          "header.topbar",
          {},
          h("a.brand", { href: "/", "data-link": true }, "firepit"),
          h("span.crumb", {}, "Sessions"),
          h("span.grow"),
          h("button.primary#new-session", { onclick: () => void this.openNew(), title: "New session (n)" }, "New session"),
          topbarTools(),
        ),
        this.error,
        h("main.sessions", {}, this.list),
      ),
    );
    document.addEventListener("keydown", this.keys);
    void this.refresh();
  }

  dispose(): void {
    this.disposed = true;
    this.unregister();
    window.clearTimeout(this.timer);
    document.removeEventListener("keydown", this.keys);
    this.dialog?.close();
    this.dialog?.remove();
  }

  private async refresh(): Promise<void> {
    window.clearTimeout(this.timer);
    try {
      const sessions = await api.sessions();
      const ports = new Map<string, Port[]>();
      await Promise.all(
        sessions
          .filter((s) => s.state === "running")
          .map(async (s) => {
            try {
              ports.set(s.id, await api.ports(s.id));
            } catch {
              // the machine may have just stopped; shown without ports
            }
          }),
      );
      if (this.disposed) return;
      this.error.hidden = true;
      this.renderList(sessions, ports);
    } catch (e) {
      if (this.disposed) return;
      this.showError(e);
    }
    if (!this.disposed) this.timer = window.setTimeout(() => void this.refresh(), REFRESH_MS);
  }

  private showError(e: unknown): void {
    this.error.hidden = false;
    replace(this.error, (e as Error).message);
    if (this.list.querySelector(".notice.loading")) {
      replace(this.list, notice("error", "Could not load the sessions.", h("button", { onclick: () => void this.refresh() }, "Retry")));
    }
  }

  private renderList(sessions: Session[], ports: Map<string, Port[]>): void {
    this.unregister();
    this.unregister = registerCommands(
      ...sessions.map((s) => ({ id: `open.${s.id}`, title: `Open session ${s.id}`, group: s.state, run: () => navigate(`/s/${s.id}`) })),
    );
    if (sessions.length === 0) {
      replace(
        this.list,
        notice(
          "empty",
          "No sessions yet. A session is an isolated machine with a shared shell, an agent, and a preview for every port.",
          h("button.primary", { onclick: () => void this.openNew() }, "New session"),
        ),
      );
      return;
    }
    sessions.sort((a, b) => b.created_at - a.created_at);
    const rows = sessions.map((s) => {
      const open = ports.get(s.id) ?? [];
      const busy = this.busy.has(s.id);
      const action = (label: string, f: () => Promise<unknown>, cls = "") =>
        h(`button.small${cls}`, {
          disabled: busy,
          onclick: async (e: Event) => {
            e.stopPropagation();
            await this.act(s.id, f);
          },
        }, label);
      return h(
        "tr.session-row",
        {
          "data-id": s.id,
          tabindex: 0,
          onkeydown: (e: Event) => (e as KeyboardEvent).key === "Enter" && e.target === e.currentTarget && navigate(`/s/${s.id}`),
          onclick: (e: Event) => !(e.target as HTMLElement).closest("a, button") && navigate(`/s/${s.id}`),
        },
        h("td", {}, h("a.mono", { href: `/s/${s.id}`, "data-link": true }, s.id)),
        h("td", {}, h(`span.state.${s.state}`, {}, s.state), s.error ? h("span.muted", { title: s.error }, " ⚠") : null),
        h("td", {}, s.image),
        h("td", { title: new Date(s.created_at * 1000).toLocaleString() }, age(s.created_at)),
        h(
          "td.ports",
          {},
          open.length
            ? open.map((p) => h("a.port", { href: p.url, target: "_blank", rel: "noopener" }, String(p.port)))
            : h("span.muted", {}, "—"),
        ),
        h(
          "td",
          {},
          h(
            "div.actions",
            {},
            s.state === "running" ? action("Stop", () => api.stop(s.id)) : null,
          s.state === "stopped" || s.state === "failed" ? action("Start", () => api.start(s.id)) : null,
          action(
            "Destroy",
            async () => {
              if (confirm(`Destroy session ${s.id}? Its files are deleted.`)) await api.destroy(s.id);
            },
              ".danger",
            ),
          ),
        ),
      );
    });
    replace(
      this.list,
      h(
        "table.table",
        {},
        h("thead", {}, h("tr", {}, ...["Session", "State", "Image", "Age", "Ports", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows),
      ),
    );
  }

  private async act(id: string, f: () => Promise<unknown>): Promise<void> {
    this.busy.add(id);
    try {
      await f();
    } catch (e) {
      this.showError(e);
    } finally {
      this.busy.delete(id);
      await this.refresh();
    }
  }

  private async openNew(): Promise<void> {
    if (this.dialog?.open) return;
    const imageSelect = h("select#new-image", { name: "image" }, h("option", { value: "" }, "default image"));
    const memory = h("input#new-memory", { name: "memory", placeholder: "e.g. 2G (default: the daemon's)", pattern: "\\d+(\\.\\d+)?\\s*[KMGkmg]?i?[Bb]?" });
    const cpus = h("input#new-cpus", { name: "cpus", type: "number", min: "0.1", step: "0.1", placeholder: "default" });
    const pids = h("input#new-pids", { name: "pids", type: "number", min: "1", step: "1", placeholder: "default" });
    const network = h("select#new-network", { name: "network" }, h("option", { value: "nat" }, "NAT (internet)"), h("option", { value: "none" }, "none (loopback only)"));
    const status = h("p.form-error", { role: "alert" });
    const submit = h("button.primary", { type: "submit" }, "Create");
    const form = h(
      "form.new-session",
      { method: "dialog" },
      h("h2", {}, "New session"),
      h("label", {}, "Image", imageSelect),
      h("label", {}, "Memory", memory),
      h("label", {}, "CPUs", cpus),
      h("label", {}, "Processes", pids),
      h("label", {}, "Network", network),
      status,
      h("div.row", {}, h("button", { type: "button", onclick: () => dialog.close() }, "Cancel"), submit),
    );
    const dialog = h("dialog.modal", {}, form);
    this.dialog = dialog;
    document.body.appendChild(dialog);
    dialog.addEventListener("close", () => dialog.remove());
    dialog.showModal();
    api
      .images()
      .then((images: Image[]) => {
        for (const i of images) imageSelect.appendChild(h("option", { value: i.name }, `${i.name} (${bytes(i.size_bytes)})`));
      })
      .catch(() => {
        // the default image still works
      });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      let memory_bytes: number | undefined;
      try {
        memory_bytes = parseMemory(memory.value);
      } catch (err) {
        replace(status, (err as Error).message);
        return;
      }
      const c = cpus.value.trim() ? Number(cpus.value) : undefined;
      if (c !== undefined && !(c > 0)) {
        replace(status, "CPUs must be a positive number.");
        return;
      }
      const p = pids.value.trim() ? Number(pids.value) : undefined;
      if (p !== undefined && !(Number.isInteger(p) && p > 0)) {
        replace(status, "Processes must be a whole number above 0.");
        return;
      }
      submit.disabled = true;
      replace(submit, "Creating…");
      try {
        const s = await api.create({
          image: imageSelect.value || undefined,
          limits: { memory_bytes, cpus: c, pids: p },
          network: network.value as "nat" | "none",
        });
        dialog.close();
        navigate(`/s/${s.id}`);
      } catch (err) {
        replace(status, err instanceof ApiError ? err.message : String(err));
        submit.disabled = false;
        replace(submit, "Create");
      }
    });
  }
}

/** "2G", "512M", "1.5GiB" → bytes; empty → undefined. */
export function parseMemory(text: string): number | undefined {
  const t = text.trim();
  if (!t) return undefined;
  const m = t.match(/^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i);
  if (!m) throw new Error(`Memory "${t}" is not a size like 512M or 2G.`);
  const mult: Record<string, number> = { "": 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };
  return Math.round(Number(m[1]) * mult[m[2].toUpperCase()]);
}

/** Whether a key event is aimed at a text field (so shortcuts stay out of the way). */
export function isTyping(e: KeyboardEvent): boolean {
  const t = e.target as HTMLElement | null;
  if (!t) return false;
  return t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName) || !!t.closest(".xterm");
}
