// The Changes view of the Files tab: what differs from the baseline (the
// session's start or its last checkpoint, kept with git in the machine; the
// repository's last commit for sessions without one; see `workspace.rs` in
// the daemon for why), one diff per file, for reviewing the agent's work.
// Where the session has both, a switch picks "since start" (all of the
// agent's work) or "since last checkpoint" (its last turn), remembered per
// browser.

import { h, notice, replace } from "./dom";
import { filesApi } from "./files-api";
import type { Changes, FileChange } from "./wire";

type Since = "start" | "checkpoint";
const SINCE_KEY = "firepit.changes.since";

/** The baseline this browser last picked (the last checkpoint's until one is picked). */
function storedSince(): Since {
  try {
    return localStorage.getItem(SINCE_KEY) === "start" ? "start" : "checkpoint";
  } catch {
    return "checkpoint";
  }
}

function storeSince(since: Since): void {
  try {
    localStorage.setItem(SINCE_KEY, since);
  } catch {
    // Storage refused (private mode): the pick lasts for this page only.
  }
}

/** The lines of a diff, coloured by kind; the hunk headers carry their new line numbers. */
function diffBody(change: FileChange, open: (line: number) => void): HTMLElement {
  const pre = h("pre.diff");
  let newLine = 0;
  for (const line of change.diff.split("\n")) {
    let cls = "";
    if (line.startsWith("@@")) {
      const m = /\+(\d+)/.exec(line);
      newLine = m ? Number(m[1]) : 0;
      const at = newLine;
      const a = h("a.hunk", { href: "#files", title: `Open at line ${at}` }, line);
      a.addEventListener("click", (e) => {
        e.preventDefault();
        open(at);
      });
      pre.appendChild(h("span.diff-line.hunk-line", {}, a));
      pre.appendChild(document.createTextNode("\n"));
      continue;
    }
    if (line.startsWith("+++") || line.startsWith("---") || line.startsWith("diff --git") || line.startsWith("index ")) cls = "meta";
    else if (line.startsWith("+")) cls = "add";
    else if (line.startsWith("-")) cls = "del";
    pre.appendChild(h(`span.diff-line${cls ? "." + cls : ""}`, {}, line));
    pre.appendChild(document.createTextNode("\n"));
  }
  return pre;
}

/** What the changes are compared with, for the header: an element, plain words, and when. */
function baselineName(c: Changes): { label: HTMLElement; text: string; when: string } {
  const when = c.taken_at ? new Date(c.taken_at * 1000).toLocaleString() : "";
  switch (c.baseline) {
    case "start":
      return { label: h("strong", {}, "the session's start"), text: "the session's start", when };
    case "checkpoint": {
      const name = c.checkpoint ?? "";
      return {
        label: h("span", {}, "checkpoint ", h("code", {}, name || "(unnamed)")),
        text: name ? `checkpoint ${name}` : "the last checkpoint",
        when,
      };
    }
    default:
      return {
        label: h("code", {}, c.head ? c.head.slice(0, 12) : "the start (no commit yet)"),
        text: "the last commit",
        when: "",
      };
  }
}

export class ChangesView {
  readonly list = h("div.changes-list#changes-list");
  readonly view = h("div.changes-view#changes-view");
  private since: Since = storedSince();
  private folder = "/root";

  constructor(
    private readonly session: string,
    /** Opens a file (absolute path) at a line. */
    private readonly open: (path: string, line: number) => void,
  ) {}

  async load(folder: string): Promise<void> {
    this.folder = folder;
    const since = this.since;
    replace(this.list, notice("loading", "Comparing…"));
    replace(this.view);
    let c: Changes;
    try {
      c = await filesApi.changes(this.session, folder, since);
    } catch (e) {
      replace(this.list, notice("error", (e as Error).message));
      return;
    }
    // A newer load (another folder, or the switch flipped) answers instead.
    if (folder !== this.folder || since !== this.since) return;
    this.render(c);
  }

  /** The "since start" / "since last checkpoint" switch, where the session has both. */
  private sinceSwitch(c: Changes): HTMLElement | null {
    const have = c.baselines ?? [];
    if (!(have.includes("start") && have.includes("checkpoint"))) return null;
    const button = (since: Since, text: string) =>
      h(
        "button.small.seg",
        {
          type: "button",
          id: `changes-since-${since}`,
          "aria-pressed": String(c.baseline === since),
          onclick: () => {
            if (c.baseline === since) return;
            this.since = since;
            storeSince(since);
            void this.load(this.folder);
          },
        },
        text,
      );
    return h(
      "span.seg-group.changes-since",
      { role: "group", "aria-label": "Compare with" },
      button("start", "since start"),
      button("checkpoint", "since last checkpoint"),
    );
  }

  private render(c: Changes): void {
    if (c.baseline === "none") {
      replace(this.list, notice("empty", c.note ?? "No baseline to compare with."));
      return;
    }
    const root = (c.root ?? "").replace(/\/$/, "");
    const since = baselineName(c);
    const head = h(
      "p.muted.changes-head",
      { "data-baseline": c.baseline },
      `${c.files.length} changed file${c.files.length === 1 ? "" : "s"} in ${root || "/"} since `,
      since.label,
      since.when ? ` (${since.when})` : null,
    );
    const note = c.note ? h("p.muted.changes-note", {}, c.note) : null;
    const pick = this.sinceSwitch(c);
    if (c.files.length === 0) {
      replace(this.list, pick, head, note, notice("empty", `Nothing changed since ${since.text}.`));
      return;
    }
    const sections = c.files.map((f, i) => {
      const path = `${root}/${f.path}`;
      const openAt = (line: number) => this.open(path, line);
      const body = diffBody(f, openAt);
      return h(
        "details.change",
        { open: true, id: `change-${i}`, "data-path": path },
        h(
          "summary",
          {},
          h(`span.change-status.${f.status}`, {}, f.status),
          h("span.mono", {}, ` ${f.path} `),
          f.status !== "deleted" ? h("button.small.link", { type: "button", onclick: () => openAt(1) }, "Open") : null,
        ),
        body,
      );
    });
    replace(
      this.list,
      pick,
      head,
      note,
      h(
        "ul.changes-files",
        {},
        c.files.map((f, i) =>
          h(
            "li",
            {},
            h(
              "button.tree-item",
              { type: "button", "data-change": f.path, onclick: () => sections[i].scrollIntoView({ block: "start" }) },
              h(`span.change-status.${f.status}`, {}, f.status[0].toUpperCase()),
              ` ${f.path}`,
            ),
          ),
        ),
      ),
    );
    replace(this.view, sections);
  }
}
