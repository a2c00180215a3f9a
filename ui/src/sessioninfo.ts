// What the list and a session's header show of a session besides its
// state: its name and labels (and renaming them), its limits, and its live
// usage (CPU share, memory, disk), read from `GET /v1/sessions/{id}/usage`
// (a header) or `GET /v1/usage?ids=…` (the list, in one request) only while
// someone looks (the page is visible), never in the background.

import { api, ApiError, MAX_USAGE_IDS, type Session, type Usage } from "./api";
import { bytes, h, replace } from "./dom";

/** The name, or the id when it has none. */
export function title(s: Session): string {
  return s.name ?? s.id;
}

/** `key=value` chips of a session's labels. */
export function labelChips(s: Session): HTMLElement[] {
  return Object.entries(s.labels ?? {}).map(([k, v]) => h("span.label-chip", { title: `label ${k}=${v}` }, `${k}=${v}`));
}

/** Whether a session matches a search: every word in its id, name, image or labels. */
export function matches(s: Session, query: string): boolean {
  const text = [s.id, s.name ?? "", s.image, ...Object.entries(s.labels ?? {}).map(([k, v]) => `${k}=${v}`)].join(" ").toLowerCase();
  return query
    .toLowerCase()
    .split(/\s+/)
    .filter(Boolean)
    .every((w) => text.includes(w));
}

/** Limits as one short line: `2 GiB · 1 CPU · 10 GiB disk · NAT`. */
export function limitsText(s: Session): string {
  const l = s.limits;
  const parts = [
    l.memory_bytes != null ? `${bytes(l.memory_bytes)} memory` : "memory: no limit",
    l.cpus != null ? `${l.cpus} CPU${l.cpus === 1 ? "" : "s"}` : "CPUs: no limit",
    l.disk_bytes != null ? `${bytes(l.disk_bytes)} disk` : null,
    s.network === "nat" ? "network: NAT" : "network: none",
  ];
  return parts.filter(Boolean).join(" · ");
}

/**
 * Turns usage readings into text. It keeps the last reading per session
 * so that the CPU share is the time between two readings.
 */
export class UsageReader {
  /** Per session: the newest reading, and the CPU share worked out when it came. */
  private last = new Map<string, { u: Usage; share: number | null }>();

  /** Reads one session's usage now; `null` when it cannot be read. */
  async read(id: string): Promise<Usage | null> {
    try {
      return await api.usage(id);
    } catch {
      return null;
    }
  }

  /**
   * Reads many sessions' usage in as few requests as the daemon allows
   * (`GET /v1/usage`); sessions it could not read are left out.
   */
  async readMany(ids: string[]): Promise<Map<string, Usage>> {
    const out = new Map<string, Usage>();
    const chunks: string[][] = [];
    for (let i = 0; i < ids.length; i += MAX_USAGE_IDS) chunks.push(ids.slice(i, i + MAX_USAGE_IDS));
    await Promise.all(
      chunks.map(async (chunk) => {
        try {
          const l = await api.usageList(chunk);
          for (const [id, u] of Object.entries(l.usage)) out.set(id, u);
        } catch {
          // shown without usage this time
        }
      }),
    );
    return out;
  }

  /** `12% CPU · 140 MiB / 2 GiB · 30 MiB disk` (the same reading twice says the same). */
  text(s: Session, u: Usage): string {
    const prev = this.last.get(s.id);
    let share = prev?.share ?? null;
    if (!prev || prev.u.time_ms !== u.time_ms) {
      share =
        prev && prev.u.cpu_usec != null && u.cpu_usec != null && u.time_ms > prev.u.time_ms
          ? Math.max(0, ((u.cpu_usec - prev.u.cpu_usec) / 1000 / (u.time_ms - prev.u.time_ms)) * 100)
          : null;
      this.last.set(s.id, { u, share });
    }
    const parts: string[] = [];
    if (u.running) {
      if (share !== null) parts.push(`${share.toFixed(share < 10 ? 1 : 0)}% CPU`);
      else if (u.cpu_usec != null) parts.push("CPU …");
      if (u.memory_bytes != null) {
        parts.push(s.limits.memory_bytes != null ? `${bytes(u.memory_bytes)} / ${bytes(s.limits.memory_bytes)}` : bytes(u.memory_bytes));
      }
    }
    if (u.disk_bytes != null) parts.push(`${bytes(u.disk_bytes)} disk`);
    return parts.join(" · ");
  }

  forget(id: string): void {
    this.last.delete(id);
  }
}

/**
 * A session's usage in a header, read every few seconds while the page is
 * visible and the session runs; it stops when disposed.
 */
export class UsageLine {
  readonly el = h("span.usage#session-usage", { title: "Live usage: CPU, memory (used / limit), disk" });
  private reader = new UsageReader();
  private timer: number | undefined;
  private session: Session | null = null;
  private disposed = false;
  private reading = false;
  private again = false;
  private onVisible = () => {
    if (!document.hidden) void this.tick();
  };

  constructor(private readonly periodMs = 3000) {
    document.addEventListener("visibilitychange", this.onVisible);
  }

  set(s: Session): void {
    const was = this.session?.state;
    this.session = s;
    if (s.state !== "running") {
      window.clearTimeout(this.timer);
      this.timer = undefined;
      this.reader.forget(s.id);
    }
    if (was !== s.state || (this.timer === undefined && !this.reading)) void this.tick();
  }

  dispose(): void {
    this.disposed = true;
    window.clearTimeout(this.timer);
    document.removeEventListener("visibilitychange", this.onVisible);
  }

  private async tick(): Promise<void> {
    window.clearTimeout(this.timer);
    this.timer = undefined;
    if (this.reading) {
      // Asked again while a reading is on its way: once more after it.
      this.again = true;
      return;
    }
    const s = this.session;
    if (!s || this.disposed || document.hidden) return;
    this.reading = true;
    const u = await this.reader.read(s.id);
    this.reading = false;
    if (this.disposed) return;
    const now = this.session;
    if (u && now?.id === s.id) replace(this.el, this.reader.text(now, u));
    if (this.again) {
      this.again = false;
      void this.tick();
    } else if (now?.state === "running") {
      this.timer = window.setTimeout(() => void this.tick(), this.periodMs);
    }
  }
}

/** Parses `key=value` lines or comma-separated pairs into labels. */
export function parseLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(/[\n,]/)) {
    const t = part.trim();
    if (!t) continue;
    const i = t.indexOf("=");
    if (i <= 0) throw new Error(`Label "${t}" is not key=value.`);
    const k = t.slice(0, i).trim();
    if (k in out) throw new Error(`Label "${k}" is given twice.`);
    out[k] = t.slice(i + 1).trim();
  }
  return out;
}

/** Labels as the text `parseLabels` reads back. */
export function labelsText(labels: Record<string, string> | undefined): string {
  return Object.entries(labels ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");
}

/** The rename dialog: name and labels; resolves with the session as saved, or null. */
export function renameDialog(s: Session): Promise<Session | null> {
  return new Promise((resolve) => {
    const name = h("input#rename-name", { name: "name", value: s.name ?? "", maxlength: 64, placeholder: "no name", "aria-label": "Name" });
    const labels = h("input#rename-labels", { name: "labels", value: labelsText(s.labels), placeholder: "team=web, ticket=42", "aria-label": "Labels" });
    const status = h("p.form-error", { role: "alert" });
    const save = h("button.primary#rename-save", { type: "submit" }, "Save");
    let result: Session | null = null;
    const form = h(
      "form.new-session",
      { method: "dialog" },
      h("h2", {}, `Rename ${s.id}`),
      h("label", {}, "Name", name),
      h("label", {}, "Labels", labels),
      status,
      h("div.row", {}, h("button", { type: "button", onclick: () => dialog.close() }, "Cancel"), save),
    );
    const dialog = h("dialog.modal#rename-dialog", {}, form);
    document.body.appendChild(dialog);
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(result);
    });
    dialog.showModal();
    name.select();
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      let parsed: Record<string, string>;
      try {
        parsed = parseLabels(labels.value);
      } catch (err) {
        replace(status, (err as Error).message);
        return;
      }
      save.disabled = true;
      try {
        result = await api.update(s.id, { name: name.value.trim(), labels: parsed });
        dialog.close();
      } catch (err) {
        replace(status, err instanceof ApiError ? err.message : String(err));
        save.disabled = false;
      }
    });
  });
}
