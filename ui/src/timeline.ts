// The session's event timeline: every event of the log in order, known types
// summarised, any other type shown as its JSON (new kinds never break it).

import type { SessionEvent, TranscriptItem } from "./api";
import { clock, h, replace } from "./dom";
import { rewind } from "./rewind";

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
    const kind = e.type === "agent" ? `agent.${e.item.type}` : e.type;
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
          ? h("a", { href: `/v1/sessions/${encodeURIComponent(e.session)}/artifacts/${encodeURIComponent(e.name)}`, target: "_blank" }, summary(e))
          : summary(e),
        e.type === "agent" && e.item.type === "checkpoint" ? this.rewindButton(e.session, e.item.checkpoint, e.seq) : null,
      ),
    );
    this.match(row);
    this.body.appendChild(row);
    while (this.body.rows.length > MAX_ROWS) this.body.deleteRow(0);
  }

  /** "rewind to here" on an agent checkpoint's row: what is lost are the
   * agent's tool calls logged after it. */
  private rewindButton(session: string, cp: string, seq: number): HTMLElement {
    const status = h("span.muted.rewind-status");
    const button = h("button.small.rewind", { type: "button", "data-checkpoint": cp }, "rewind to here");
    button.addEventListener("click", () => {
      const later = Array.from(this.body.rows)
        .filter((r) => Number(r.dataset.seq) > seq && r.dataset.type === "agent.tool_started")
        .map((r) => r.cells[3].textContent ?? "");
      button.disabled = true;
      rewind(session, cp, later)
        .then((done) => replace(status, done ? ` rewound to ${cp}` : ""))
        .catch((e: Error) => replace(status, ` ${e.message}`))
        .finally(() => (button.disabled = false));
    });
    return h("span", {}, " ", button, status);
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
  switch (e.type) {
    case "session_state":
      return `${e.state}${e.error ? `: ${e.error}` : ""}`;
    case "port_opened":
      return `:${e.port} on ${e.addr} → ${e.url}`;
    case "port_closed":
      return `:${e.port} on ${e.addr}`;
    case "service_started":
      return `${e.name}${e.pid ? ` (pid ${e.pid})` : ""}`;
    case "service_exited":
      return `${e.name}: ${e.status.code !== null ? `exit ${e.status.code}` : `signal ${e.status.signal}`}`;
    case "share_created":
      return `${e.id} for :${e.port}, expires ${new Date(e.expires_at * 1000).toLocaleString()}`;
    case "share_revoked":
      return e.id;
    case "note":
      return e.text;
    case "problem":
      return `${e.source}: ${e.summary}${e.count > 1 ? ` (×${e.count})` : ""}`;
    case "artifact":
      return `${e.name} (${e.content_type}, ${e.bytes} bytes)`;
    case "checkpoint_made":
      return `${e.checkpoint}${e.name ? ` "${e.name}"` : ""} by ${e.made_by}, ${e.size_bytes} bytes`;
    case "restored":
      return `files back at ${e.checkpoint}${e.services.length ? `; restarted ${e.services.join(", ")}` : ""}`;
    case "forked":
      return `${e.parent} → ${e.child}${e.checkpoint ? ` from ${e.checkpoint}` : ""}`;
    case "agent":
      return agentSummary(e.item);
    default: {
      // Any other type (a newer daemon's too): its fields as JSON.
      const { seq: _s, session: _x, time_ms: _t, type: _k, ...rest } = e as Record<string, unknown>;
      return clip(JSON.stringify(rest));
    }
  }
}

function agentSummary(item: TranscriptItem): string {
  switch (item.type) {
    case "usage": {
      const cost = item.total_cost_usd != null ? ` · $${item.total_cost_usd.toFixed(4)}` : "";
      return `${item.input_tokens} in · ${item.output_tokens} out (session: ${item.total_input_tokens} in · ${item.total_output_tokens} out${cost})`;
    }
    case "run_started":
      return `${item.provider} · ${item.model}`;
    case "assistant_message":
      if (item.tool_calls.length) {
        const calls = item.tool_calls.map((c) => `→ ${c.name}`).join(" ");
        return clip(`${item.text ? `${item.text} ` : ""}${calls}`);
      }
      return clip(item.text);
    case "user_message":
    case "assistant_delta":
      return clip(item.text);
    case "error":
      return clip(item.message);
    case "tool_result":
      return clip(item.output);
    case "run_finished":
      return clip(item.reason);
    case "tool_started":
      return clip(item.name);
    case "checkpoint":
      return `${item.checkpoint} before ${item.tool_call_ids.length} call(s)`;
    default: {
      const { type: _k, ...rest } = item as Record<string, unknown>;
      return clip(JSON.stringify(rest));
    }
  }
}

function clip(s: string): string {
  return s.length > 200 ? s.slice(0, 200) + "…" : s;
}
