// The session's event timeline: every event of the log in order, known types
// summarised, any other type shown as its JSON (new kinds never break it).

import type { SessionEvent } from "./api";
import { clock, h } from "./dom";

const MAX_ROWS = 3000;

export class TimelinePane {
  readonly el: HTMLElement;
  private body = h("tbody");
  private filter = h("input.small#timeline-filter", { placeholder: "filter by type or text", "aria-label": "Filter events" });
  private hideDeltas = h("input", { type: "checkbox", checked: true });

  constructor() {
    this.filter.addEventListener("input", () => this.applyFilter());
    this.hideDeltas.addEventListener("change", () => this.applyFilter());
    this.el = h(
      "section.pane.timeline-pane",
      {},
      h("div.pane-head", {}, h("strong", {}, "Timeline"), this.filter, h("label.muted", {}, this.hideDeltas, " hide streamed text")),
      h("div.scroll#timeline", {}, h("table.table.events", {}, h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "time"), h("th", {}, "type"), h("th", {}, "what"))), this.body)),
    );
  }

  onEvent(e: SessionEvent): void {
    const kind = e.type === "agent" ? `agent.${(e.item as { type: string }).type}` : e.type;
    const row = h(
      "tr",
      { "data-type": kind, "data-seq": e.seq },
      h("td.mono.muted", {}, String(e.seq)),
      h("td.mono.muted", {}, clock(e.time_ms)),
      h("td", {}, h("span.ev-type", { class: `ev-${e.type}` }, kind)),
      h(
        "td.what",
        {},
        e.type === "artifact"
          ? h("a", { href: `/v1/sessions/${encodeURIComponent(e.session)}/artifacts/${encodeURIComponent(String(e.name))}`, target: "_blank" }, summary(e))
          : summary(e),
      ),
    );
    this.match(row);
    this.body.appendChild(row);
    while (this.body.rows.length > MAX_ROWS) this.body.deleteRow(0);
  }

  private applyFilter(): void {
    for (const row of Array.from(this.body.rows)) this.match(row);
  }

  private match(row: HTMLTableRowElement): void {
    const q = this.filter.value.trim().toLowerCase();
    const isDelta = row.dataset.type === "agent.assistant_delta";
    row.hidden = (this.hideDeltas.checked && isDelta) || (!!q && !row.textContent!.toLowerCase().includes(q));
  }
}

/** A one-line description of an event. */
export function summary(e: SessionEvent): string {
  const { seq: _s, session: _x, time_ms: _t, type, ...rest } = e;
  switch (type) {
    case "session_state":
      return `${rest.state}${rest.error ? `: ${rest.error}` : ""}`;
    case "port_opened":
      return `:${rest.port} on ${rest.addr} → ${rest.url}`;
    case "port_closed":
      return `:${rest.port} on ${rest.addr}`;
    case "service_started":
      return `${rest.name}${rest.pid ? ` (pid ${rest.pid})` : ""}`;
    case "service_exited": {
      const s = rest.status as { code: number | null; signal: number | null };
      return `${rest.name}: ${s.code !== null ? `exit ${s.code}` : `signal ${s.signal}`}`;
    }
    case "share_created":
      return `${rest.id} for :${rest.port}, expires ${new Date((rest.expires_at as number) * 1000).toLocaleString()}`;
    case "share_revoked":
      return String(rest.id);
    case "note":
      return String(rest.text);
    case "problem":
      return `${rest.source}: ${rest.summary}${(rest.count as number) > 1 ? ` (×${rest.count})` : ""}`;
    case "artifact":
      return `${rest.name} (${rest.content_type}, ${rest.bytes} bytes)`;
    case "agent": {
      const { type: kind, ...item } = rest.item as Record<string, unknown>;
      if (kind === "usage") {
        const cost = item.total_cost_usd !== undefined ? ` · $${(item.total_cost_usd as number).toFixed(4)}` : "";
        return `${item.input_tokens} in · ${item.output_tokens} out (session: ${item.total_input_tokens} in · ${item.total_output_tokens} out${cost})`;
      }
      if (kind === "run_started") return `${item.provider} · ${item.model}`;
      if (kind === "assistant_message" && Array.isArray(item.tool_calls) && item.tool_calls.length) {
        const calls = (item.tool_calls as { name: string }[]).map((c) => `→ ${c.name}`).join(" ");
        return clip(`${item.text ? `${item.text} ` : ""}${calls}`);
      }
      const text = item.text ?? item.message ?? item.output ?? item.reason ?? item.name;
      return typeof text === "string" ? clip(text) : clip(JSON.stringify(item));
    }
    default:
      return clip(JSON.stringify(rest));
  }
}

function clip(s: string): string {
  return s.length > 200 ? s.slice(0, 200) + "…" : s;
}
