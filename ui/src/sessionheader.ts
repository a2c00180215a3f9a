// A session's header beside its id: its name (click to rename it and its
// labels), its labels, its limits and its live usage (read only while the
// page is visible and the session runs).

import type { Session } from "./api";
import { h, replace } from "./dom";
import { labelChips, limitsText, renameDialog, UsageLine } from "./sessioninfo";

export class SessionHeader {
  readonly el: HTMLElement;
  private name = h("button.link.session-title#session-name", { type: "button", title: "Rename, or change its labels" });
  private labels = h("span.labels#session-labels");
  private limits = h("span.limits.muted#session-limits");
  private usage = new UsageLine();
  private session: Session | null = null;

  constructor(
    private readonly id: string,
    private readonly onChange: (s: Session) => void,
  ) {
    this.el = h("span.session-info", {}, this.name, this.labels, this.limits, this.usage.el);
    this.name.addEventListener("click", async () => {
      if (!this.session) return;
      const saved = await renameDialog(this.session);
      if (saved) this.onChange(saved);
    });
  }

  set(s: Session): void {
    this.session = s;
    replace(this.name, s.name ?? "name…");
    this.name.classList.toggle("unnamed", !s.name);
    document.title = `${s.name ?? this.id} · firepit`;
    replace(this.labels, labelChips(s));
    replace(this.limits, limitsText(s));
    this.usage.set(s);
  }

  dispose(): void {
    this.usage.dispose();
  }
}
