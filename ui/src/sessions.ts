// The sessions list: name and labels, state, image, limits and live usage,
// age and open ports of each session, searchable; new session (name,
// labels, image, limits checked against the host, network, repository);
// rename, stop, start, destroy.

import { ApiError, api, type HostInfo, type Image, type Port, type Session, type Usage } from "./api";
import { age, bytes, h, notice, replace } from "./dom";
import { topbarTools } from "./layout";
import { navigate, type Page } from "./main";
import { registerCommands } from "./palette";
import { labelChips, limitsText, matches, parseLabels, renameDialog, UsageReader } from "./sessioninfo";

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
  private filter = h("input#session-filter", { type: "search", placeholder: "Search name, label, id, image…", "aria-label": "Search sessions" });
  private usage = new UsageReader();
  private last: { sessions: Session[]; ports: Map<string, Port[]>; usage: Map<string, Usage> } | null = null;
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
        h("main.sessions", {}, h("div.list-tools", {}, this.filter), this.list),
      ),
    );
    document.addEventListener("keydown", this.keys);
    this.filter.addEventListener("input", () => {
      if (this.last) this.renderList(this.last.sessions, this.last.ports, this.last.usage);
    });
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
    // Nothing is read while nobody sees the page: it reads again when shown.
    if (document.hidden) {
      if (!this.disposed) this.timer = window.setTimeout(() => void this.refresh(), REFRESH_MS);
      return;
    }
    try {
      const sessions = await api.sessions();
      const ports = new Map<string, Port[]>();
      const running = sessions.filter((s) => s.state === "running");
      // Usage of every running session in one request.
      const reading = this.usage.readMany(running.map((s) => s.id));
      await Promise.all(
        running.map(async (s) => {
          try {
            ports.set(s.id, await api.ports(s.id));
          } catch {
            // the machine may have just stopped; shown without ports
          }
        }),
      );
      const usage = await reading;
      if (this.disposed) return;
      this.error.hidden = true;
      this.last = { sessions, ports, usage };
      this.renderList(sessions, ports, usage);
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

  private renderList(all: Session[], ports: Map<string, Port[]>, usage: Map<string, Usage>): void {
    this.unregister();
    this.unregister = registerCommands(
      ...all.map((s) => ({ id: `open.${s.id}`, title: `Open session ${s.name ? `${s.name} (${s.id})` : s.id}`, group: s.state, run: () => navigate(`/s/${s.id}`) })),
    );
    const query = this.filter.value.trim();
    const sessions = query ? all.filter((s) => matches(s, query)) : all;
    if (all.length > 0 && sessions.length === 0) {
      replace(this.list, notice("empty", `No session matches "${query}".`));
      return;
    }
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
        h(
          "td.session-name",
          {},
          h("a", { href: `/s/${s.id}`, "data-link": true }, s.name ? h("span.name", {}, s.name) : h("span.mono", {}, s.id)),
          s.name ? h("span.mono.muted.small-id", {}, ` ${s.id}`) : null,
          h("div.labels", {}, labelChips(s)),
        ),
        h("td", {}, h(`span.state.${s.state}`, {}, s.state), s.error ? h("span.muted", { title: s.error }, " ⚠") : null),
        h("td", {}, s.image),
        h(
          "td.usage-cell",
          { title: limitsText(s) },
          h("div.usage", {}, usage.has(s.id) ? this.usage.text(s, usage.get(s.id)!) : "—"),
          h("div.limits.muted", {}, limitsText(s)),
        ),
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
            action("Rename", () => renameDialog(s)),
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
        h("thead", {}, h("tr", {}, ...["Session", "State", "Image", "Usage · limits", "Age", "Ports", ""].map((t) => h("th", { class: t.startsWith("Usage") ? "usage-cell" : null }, t)))),
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
    const name = h("input#new-name", { name: "name", maxlength: 64, placeholder: "optional, e.g. checkout page" });
    const labels = h("input#new-labels", { name: "labels", placeholder: "optional, e.g. team=web, ticket=42" });
    const imageSelect = h("select#new-image", { name: "image" }, h("option", { value: "" }, "loading images…"));
    const memory = h("input#new-memory", { name: "memory", placeholder: "e.g. 2G" });
    const cpus = h("input#new-cpus", { name: "cpus", type: "number", min: "0.01", step: "0.01", placeholder: "default" });
    const pids = h("input#new-pids", { name: "pids", type: "number", min: "16", step: "1", placeholder: "default" });
    const network = h("select#new-network", { name: "network" }, h("option", { value: "nat" }, "NAT (internet)"), h("option", { value: "none" }, "none (loopback only)"));
    const repo = h("input#new-repo", { name: "repo", placeholder: "owner/name" });
    const repoRow = h("label#new-repo-row", { hidden: true }, "Repository", repo);
    const hint = h("p.hint#new-hint", {}, "");
    const status = h("p.form-error", { role: "alert" });
    const submit = h("button.primary", { type: "submit" }, "Create");
    const form = h(
      "form.new-session",
      { method: "dialog" },
      h("h2", {}, "New session"),
      h("label", {}, "Name", name),
      h("label", {}, "Labels", labels),
      h("label", {}, "Image", imageSelect),
      repoRow,
      h("label", {}, "Memory", memory),
      h("label", {}, "CPUs", cpus),
      h("label", {}, "Processes", pids),
      h("label", {}, "Network", network),
      hint,
      status,
      h("div.row", {}, h("button", { type: "button", onclick: () => dialog.close() }, "Cancel"), submit),
    );
    const dialog = h("dialog.modal.new-session-dialog", {}, form);
    this.dialog = dialog;
    document.body.appendChild(dialog);
    dialog.addEventListener("close", () => dialog.remove());
    dialog.showModal();
    let host: HostInfo | null = null;
    api
      .host()
      .then((hi) => {
        host = hi;
        const d = hi.default_limits;
        memory.placeholder = `default ${d.memory_bytes != null ? bytes(d.memory_bytes) : "none"}; at most ${bytes(hi.memory_bytes)}`;
        cpus.placeholder = `default ${d.cpus ?? "all"}; host has ${hi.cpus}`;
        if (d.pids != null) pids.placeholder = `default ${d.pids}`;
        replace(hint, `This host has ${bytes(hi.memory_bytes)} of memory (${bytes(hi.memory_available_bytes)} free now) and ${hi.cpus} CPU${hi.cpus === 1 ? "" : "s"}.`);
        repoRow.hidden = !hi.forge;
        return api.images().then((images: Image[]) => fillImages(imageSelect, images, hi.default_image));
      })
      .catch((e) => {
        replace(imageSelect, h("option", { value: "" }, "the daemon's default image"));
        replace(hint, `Could not read the host's limits: ${(e as Error).message}`);
      });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      replace(status);
      let memory_bytes: number | undefined;
      let parsedLabels: Record<string, string>;
      try {
        memory_bytes = parseMemory(memory.value);
        parsedLabels = parseLabels(labels.value);
      } catch (err) {
        replace(status, (err as Error).message);
        return;
      }
      if (memory_bytes !== undefined && host && memory_bytes > host.memory_bytes) {
        replace(status, `Memory ${bytes(memory_bytes)} is more than this host has (${bytes(host.memory_bytes)}).`);
        memory.focus();
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
          name: name.value.trim() || undefined,
          labels: parsedLabels,
          repo: !repoRow.hidden && repo.value.trim() ? repo.value.trim() : undefined,
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

/** Fills the image picker: every image once, with its size, the default first and chosen. */
export function fillImages(select: HTMLSelectElement, images: Image[], defaultImage: string): void {
  const seen = new Set<string>();
  const unique = images.filter((i) => !seen.has(i.name) && seen.add(i.name));
  unique.sort((a, b) => (a.name === defaultImage ? -1 : b.name === defaultImage ? 1 : a.name.localeCompare(b.name)));
  replace(
    select,
    unique.map((i) => h("option", { value: i.name, selected: i.name === defaultImage }, `${i.name} (${bytes(i.size_bytes)})${i.name === defaultImage ? " · default" : ""}`)),
  );
  if (!seen.has(defaultImage)) {
    // The default image is not built yet: the daemon says so if it is chosen.
    select.insertBefore(h("option", { value: defaultImage, selected: true }, `${defaultImage} · default (not built)`), select.firstChild);
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
