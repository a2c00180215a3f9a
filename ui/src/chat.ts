// The chat with the session's agent, rebuilt from the `agent` events of the
// session's log: streamed text, tool calls with their results (collapsible),
// run boundaries, errors, and the token and cost counter. Sending while a run
// goes on interjects; Stop ends the run.

import { type AgentStatus, api, type SessionEvent, type ToolCall, type TranscriptItem } from "./api";
import { h, replace } from "./dom";
import { linkify } from "./file-links";
import { rewind } from "./rewind";

/** Shows at most this much of a tool's arguments or output before "show all". */
const PREVIEW_CHARS = 4000;

export class Chat {
  readonly el: HTMLElement;
  private log = h("div.chat-log", { role: "log", "aria-live": "polite" });
  private input = h("textarea#chat-input", {
    rows: 3,
    placeholder: "Ask the agent… (Enter sends, Shift+Enter for a new line)",
    "aria-label": "Message to the agent",
  });
  private send = h("button.primary#chat-send", { type: "submit" }, "Send");
  private stop = h("button.danger#chat-stop", { type: "button", hidden: true }, "Stop");
  private counter = h("span.counter#chat-usage", { title: "Tokens in / out and cost for this session" });
  private model = h("span.muted.model");
  private guidance = h("div.guidance", { hidden: true });
  private formError = h("p.form-error", { role: "alert" });
  private streaming: HTMLElement | null = null;
  private tools = new Map<string, HTMLElement>();
  /** Tool calls in the order they were shown, for what a rewind loses. */
  private calls: { id: string; seq: number; text: string }[] = [];
  private running = false;
  private empty: HTMLElement;

  constructor(private readonly session: string) {
    this.empty = h(
      "div.notice.empty.chat-empty",
      {},
      h("p", {}, "Tell the agent what to build. It works in this session's machine: it types into the shared terminal, edits files, runs the app and checks it in the preview."),
    );
    this.log.appendChild(this.empty);
    const form = h(
      "form.chat-form",
      {},
      this.input,
      h("div.row", {}, this.counter, h("span.grow"), this.formError, this.stop, this.send),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.submit();
    });
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        void this.submit();
      } else if (e.key === "Escape" && this.running) {
        e.preventDefault();
        void this.stopRun();
      }
    });
    this.stop.addEventListener("click", () => void this.stopRun());
    this.el = h("section.chat", { "aria-label": "Agent chat" }, h("div.pane-head", {}, h("strong", {}, "Agent"), this.model), this.guidance, this.log, form);
    this.setUsage(0, 0, undefined);
  }

  focus(): void {
    this.input.focus();
  }

  /** The agent's status (model, tokens, whether it runs) from the API. */
  applyStatus(s: AgentStatus): void {
    if (!s.configured) {
      this.guidance.hidden = false;
      replace(
        this.guidance,
        h("strong", {}, "No model is configured."),
        h("pre", {}, s.help ?? "Set ANTHROPIC_API_KEY, OPENAI_API_KEY, or FIREPIT_MODEL_URL before `firepit up`, then restart it."),
      );
      this.input.disabled = true;
      this.send.disabled = true;
      this.input.placeholder = "Configure a model to talk to the agent.";
    } else {
      this.guidance.hidden = true;
      replace(this.model, `${s.provider ?? ""} · ${s.model ?? ""}`);
    }
    this.setUsage(s.input_tokens, s.output_tokens, s.cost_usd);
    this.setRunning(s.running);
  }

  private setUsage(input: number, output: number, cost: number | null | undefined): void {
    const k = (n: number) => (n >= 10000 ? `${(n / 1000).toFixed(0)}k` : String(n));
    replace(this.counter, `${k(input)} in · ${k(output)} out${cost != null ? ` · $${cost.toFixed(4)}` : ""}`);
  }

  private setRunning(r: boolean): void {
    this.running = r;
    this.stop.hidden = !r;
    replace(this.send, r ? "Interject" : "Send");
    this.el.classList.toggle("running", r);
  }

  private async submit(): Promise<void> {
    const text = this.input.value.trim();
    if (!text) return;
    this.send.disabled = true;
    replace(this.formError);
    try {
      const r = await api.send(this.session, text);
      this.input.value = "";
      if (r.status === "started") this.setRunning(true);
    } catch (e) {
      replace(this.formError, (e as Error).message);
    } finally {
      this.send.disabled = false;
      this.input.focus();
    }
  }

  private async stopRun(): Promise<void> {
    try {
      await api.stopAgent(this.session);
    } catch (e) {
      replace(this.formError, (e as Error).message);
    }
  }

  /** Applies one event of the log: the agent's, and the problems and test
   * runs the closed loop hands it, so the person sees why the agent woke. */
  onEvent(e: SessionEvent): void {
    if (e.type !== "agent" && e.type !== "problem" && e.type !== "test_run") return;
    const stick = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
    this.empty.remove();
    if (e.type === "agent") this.apply(e.item, e.seq);
    else if (e.type === "problem") this.add(this.problem(e));
    else this.add(this.testRun(e));
    if (stick) this.log.scrollTop = this.log.scrollHeight;
  }

  private problem(e: Extract<SessionEvent, { type: "problem" }>): HTMLElement {
    const count = e.count;
    const from = problemSource(e.source);
    return h(
      `details.msg.problem.from-${from.kind}`,
      { "data-seq": e.seq, title: `source: ${e.source}` },
      h(
        "summary",
        {},
        h("span.tag", {}, `problem · ${from.label}`),
        ` ${e.summary}`,
        count > 1 ? h("span.count", {}, ` ×${count}`) : null,
      ),
      clipped(e.detail, true),
    );
  }

  private testRun(e: Extract<SessionEvent, { type: "test_run" }>): HTMLElement {
    const ok = e.ok;
    return h(
      `div.msg.test-run.${ok ? "ok" : "failed"}`,
      { "data-seq": e.seq },
      h("span.tag", {}, ok ? "tests passed" : "tests failed"),
      ` ${e.command}: ${e.summary}`,
    );
  }

  private apply(item: TranscriptItem, seq: number): void {
    switch (item.type) {
      case "run_started":
        this.setRunning(true);
        replace(this.model, `${item.provider} · ${item.model}`);
        break;
      case "user_message":
        this.add(
          h(
            "div.msg.user",
            { "data-seq": seq },
            item.interjection ? h("span.tag", {}, "interjection") : null,
            h("div.text", {}, item.text),
          ),
        );
        break;
      case "assistant_delta":
        if (!this.streaming) {
          this.streaming = h("div.msg.assistant.streaming", { "data-seq": seq }, h("div.text"));
          this.add(this.streaming);
        }
        this.streaming.querySelector(".text")!.append(item.text);
        break;
      case "assistant_message": {
        const msg = this.streaming ?? h("div.msg.assistant", { "data-seq": seq }, h("div.text"));
        this.streaming = null;
        msg.classList.remove("streaming");
        const text = msg.querySelector(".text")!;
        replace(text, ...formatText(item.text));
        if (!item.text) msg.classList.add("no-text");
        if (!msg.isConnected) this.add(msg);
        for (const call of item.tool_calls) {
          this.add(this.toolCall(call));
          this.calls.push({ id: call.id, seq, text: `${call.name} ${brief(call.arguments)}`.trim() });
        }
        break;
      }
      case "checkpoint": {
        const cp = item.checkpoint;
        const button = h("button.small.rewind", { type: "button", "data-checkpoint": cp, title: `Restore checkpoint ${cp}` }, "Rewind to here");
        const status = h("span.muted.rewind-status");
        const el = h("div.msg.checkpoint", { "data-seq": seq, "data-checkpoint": cp }, h("span.tag", {}, "checkpoint"), ` ${cp} `, button, status);
        const ids = item.tool_call_ids;
        button.addEventListener("click", () => void this.rewindTo(cp, seq, ids, button, status));
        // Before the calls it was made for.
        const first = item.tool_call_ids.map((id) => this.tools.get(id)).find((t) => t?.isConnected);
        if (first) this.log.insertBefore(el, first);
        else this.add(el);
        break;
      }
      case "tool_started":
        this.tools.get(item.id)?.classList.add("started");
        break;
      case "tool_result": {
        const el = this.tools.get(item.id);
        if (!el) break;
        el.classList.remove("started");
        el.classList.add(item.is_error ? "failed" : "done");
        el.querySelector(".tool-status")!.textContent = item.is_error ? "failed" : "done";
        el.appendChild(h("div.tool-result", {}, h("div.label", {}, "result"), clipped(item.output)));
        break;
      }
      case "compacted":
        this.add(h("div.msg.note", {}, `Older history was summarised to stay within the model's context (${item.dropped} messages).`));
        break;
      case "usage":
        this.setUsage(item.total_input_tokens, item.total_output_tokens, item.total_cost_usd);
        break;
      case "error":
        this.add(h("div.msg.error", { role: "alert" }, item.message));
        break;
      case "run_finished":
        this.endRun(item.reason === "done" ? "done" : item.reason.replace(/_/g, " "));
        break;
      case "run_stopped":
        this.endRun("stopped");
        break;
      default:
        this.add(h("div.msg.note", {}, JSON.stringify(item)));
    }
  }

  private async rewindTo(cp: string, seq: number, ids: string[], button: HTMLButtonElement, status: HTMLElement): Promise<void> {
    const later = this.calls.filter((c) => ids.includes(c.id) || c.seq > seq).map((c) => c.text);
    button.disabled = true;
    replace(status, "");
    try {
      if (await rewind(this.session, cp, later)) replace(status, ` rewound to ${cp}`);
    } catch (e) {
      replace(status, ` ${(e as Error).message}`);
    } finally {
      button.disabled = false;
    }
  }

  private endRun(why: string): void {
    if (this.streaming) {
      this.streaming.classList.remove("streaming");
      this.streaming = null;
    }
    for (const t of this.tools.values()) {
      if (t.classList.contains("started")) {
        t.classList.remove("started");
        t.querySelector(".tool-status")!.textContent = "cut off";
      }
    }
    this.setRunning(false);
    this.add(h("div.run-end", {}, `— ${why}`));
  }

  private toolCall(call: ToolCall): HTMLElement {
    let args = call.arguments;
    try {
      args = JSON.stringify(JSON.parse(call.arguments), null, 2);
    } catch {
      // shown as the model sent it
    }
    const summary = h(
      "summary",
      {},
      h("span.tool-name", {}, call.name),
      h("span.tool-brief", {}, brief(call.arguments)),
      h("span.tool-status", {}, "…"),
    );
    const el = h("details.tool", { "data-tool-id": call.id }, summary, h("div.label", {}, "arguments"), clipped(args));
    this.tools.set(call.id, el);
    return el;
  }

  private add(el: HTMLElement): void {
    this.log.appendChild(el);
  }
}

/** Text with its fenced code blocks (```…```) set apart as `<pre>`; the rest stays plain text. */
export function formatText(text: string): (string | HTMLElement)[] {
  const out: (string | HTMLElement)[] = [];
  const fence = /```[^\n]*\n([\s\S]*?)(?:```|$)/g;
  let last = 0;
  for (let m = fence.exec(text); m; m = fence.exec(text)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    out.push(h("pre.code", {}, m[1].replace(/\n$/, "")));
    last = fence.lastIndex;
    if (text[last] === "\n") last++; // the block ends the line itself
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

/** A one-line gist of a tool call's arguments. */
function brief(args: string): string {
  try {
    const v = JSON.parse(args) as Record<string, unknown>;
    const first = v.command ?? v.path ?? v.url ?? Object.values(v)[0];
    const s = typeof first === "string" ? first : JSON.stringify(first ?? "");
    return s.length > 80 ? s.slice(0, 80) + "…" : s;
  } catch {
    return args.slice(0, 80);
  }
}

/** A `<pre>` with long text clipped behind a "show all" button. */
function clipped(text: string, links = false): HTMLElement {
  const show = (t: string) => (links ? linkify(t) : [t]);
  const pre = h("pre.tool-text", {}, show(text.length > PREVIEW_CHARS ? text.slice(0, PREVIEW_CHARS) : text));
  if (text.length <= PREVIEW_CHARS) return pre;
  const more = h("button.small.link", {}, `show all ${text.length} characters`);
  more.addEventListener("click", () => {
    replace(pre, show(text));
    more.remove();
  });
  return h("div", {}, pre, more);
}

/** Where a problem came from, in words: `service:web` → the service web,
 * `shell:main` → the shared shell, `browser` → the agent's browser,
 * `preview` → the person's preview, `test` → tests. */
export function problemSource(source: string): { kind: string; label: string } {
  const [head, name] = source.split(":", 2);
  switch (head) {
    case "service":
      return { kind: "service", label: `service ${name ?? ""}`.trim() };
    case "shell":
      return { kind: "shell", label: name && name !== "main" ? `terminal ${name}` : "shared shell" };
    case "browser":
      return { kind: "browser", label: "agent's browser" };
    case "preview":
      return { kind: "preview", label: "your preview" };
    case "test":
      return { kind: "test", label: "tests" };
    default:
      return { kind: "other", label: source };
  }
}
