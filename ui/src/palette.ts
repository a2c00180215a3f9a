// The command palette (Ctrl+K / Cmd+K) and the keyboard shortcut help (`?`).
//
// Commands live in a small registry: any module adds its own with
// `registerCommands(...)` and removes them with the function it returns
// (a page does so in `dispose`). The palette lists the commands whose
// `when` holds, filters them as the person types (every word must match
// the title or the group), and runs the chosen one. The help lists the
// fixed shortcuts and every registered command that has keys.

import { h, replace } from "./dom";

export interface Command {
  /** Unique among the registered commands, e.g. `tab.terminal`. */
  id: string;
  /** What the palette shows, e.g. "Go to Terminal". */
  title: string;
  /** A group shown beside the title, e.g. "Session". */
  group?: string;
  /** The keys that run it too, as shown to the person, e.g. "Alt+1". */
  keys?: string;
  /** Whether it applies now; absent means always. */
  when?: () => boolean;
  run: () => void | Promise<void>;
}

/** Each command with the number of the call that registered it. */
const commands = new Map<string, { c: Command; batch: number }>();
let batches = 0;

/** Adds commands (one with an id already there replaces it); returns their removal. */
export function registerCommands(...cmds: Command[]): () => void {
  const batch = ++batches;
  for (const c of cmds) commands.set(c.id, { c, batch });
  return () => {
    for (const c of cmds) if (commands.get(c.id)?.c === c) commands.delete(c.id);
  };
}

/** The commands that apply now: the latest registered group first (the
 * page's before the app's), each group in its own order. */
export function availableCommands(): Command[] {
  const all = [...commands.values()];
  all.sort((a, b) => b.batch - a.batch);
  return all.map((x) => x.c).filter((c) => {
    try {
      return c.when?.() ?? true;
    } catch {
      return false;
    }
  });
}

/** The commands matching `query`: every word in the title or the group. */
export function matchCommands(list: Command[], query: string): Command[] {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  return list.filter((c) => {
    const text = `${c.title} ${c.group ?? ""} ${c.keys ?? ""}`.toLowerCase();
    return words.every((w) => text.includes(w));
  });
}

/** Shortcuts that are keys, not commands: shown by the help alone. */
const FIXED: [string, string][] = [
  ["Ctrl+K / ⌘K", "Command palette"],
  ["Esc", "Close a dialog; in the chat, stop the agent's run"],
  ["Enter", "In the chat: send (Shift+Enter: a new line)"],
  ["n", "On the sessions list: new session"],
];

let open: HTMLDialogElement | null = null;

function close(): void {
  open?.close();
}

function dialog(cls: string, label: string, ...children: HTMLElement[]): HTMLDialogElement {
  close();
  const d = h(`dialog.modal.${cls}`, { "aria-label": label }, ...children);
  d.addEventListener("close", () => {
    d.remove();
    if (open === d) open = null;
  });
  // A click on the backdrop (outside the box) closes it.
  d.addEventListener("click", (e) => {
    if (e.target === d) d.close();
  });
  document.body.appendChild(d);
  open = d;
  d.showModal();
  return d;
}

/** Opens the command palette. */
export function openPalette(): void {
  const input = h("input#palette-input", {
    type: "text",
    placeholder: "Type a command…",
    "aria-label": "Command",
    autocomplete: "off",
    spellcheck: false,
    role: "combobox",
    "aria-controls": "palette-list",
    "aria-expanded": "true",
  });
  const list = h("ul#palette-list", { role: "listbox", "aria-label": "Commands" });
  const all = availableCommands();
  let shown: Command[] = [];
  let active = 0;
  const render = () => {
    shown = matchCommands(all, input.value);
    active = Math.min(active, Math.max(0, shown.length - 1));
    replace(
      list,
      shown.length
        ? shown.map((c, i) =>
            h(
              "li.palette-item",
              {
                role: "option",
                id: `cmd-${c.id.replace(/[^A-Za-z0-9_-]/g, "-")}`,
                "data-command": c.id,
                "aria-selected": String(i === active),
                onmousedown: (e: Event) => e.preventDefault(),
                onclick: () => run(c),
              },
              h("span.palette-title", {}, c.title),
              c.group ? h("span.palette-group", {}, c.group) : null,
              c.keys ? h("kbd", {}, c.keys) : null,
            ),
          )
        : h("li.palette-empty", {}, "No command matches."),
    );
    const sel = shown[active];
    if (sel) input.setAttribute("aria-activedescendant", `cmd-${sel.id.replace(/[^A-Za-z0-9_-]/g, "-")}`);
    list.querySelector("[aria-selected=true]")?.scrollIntoView({ block: "nearest" });
  };
  const run = (c: Command) => {
    close();
    Promise.resolve()
      .then(() => c.run())
      .catch((e) => console.warn(`command ${c.id} failed`, e));
  };
  input.addEventListener("input", () => {
    active = 0;
    render();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      if (shown.length) active = (active + (e.key === "ArrowDown" ? 1 : shown.length - 1)) % shown.length;
      render();
    } else if (e.key === "Enter") {
      e.preventDefault();
      const c = shown[active];
      if (c) run(c);
    }
  });
  dialog("palette", "Command palette", input, list);
  render();
  input.focus();
}

/** Opens the keyboard shortcut help. */
export function openHelp(): void {
  const rows: [string, string][] = [...FIXED];
  for (const c of availableCommands()) if (c.keys) rows.push([c.keys, c.title]);
  dialog(
    "help",
    "Keyboard shortcuts",
    h(
      "div.help-body#shortcut-help",
      {},
      h("h2", {}, "Keyboard shortcuts"),
      h(
        "table.shortcuts",
        {},
        h(
          "tbody",
          {},
          rows.map(([k, what]) => h("tr", {}, h("td", {}, h("kbd", {}, k)), h("td", {}, what))),
        ),
      ),
      h("div.row", {}, h("button", { type: "button", onclick: close }, "Close")),
    ),
  );
}

/** Whether a key event is aimed at a text field or the terminal. */
export function typingIn(e: KeyboardEvent): boolean {
  const t = e.target as HTMLElement | null;
  if (!t || !t.closest) return false;
  return t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName) || !!t.closest(".xterm, .cm-editor");
}

// Capture, so the terminal does not take Ctrl+K for itself.
document.addEventListener(
  "keydown",
  (e) => {
    if ((e.ctrlKey || e.metaKey) && !e.altKey && !e.shiftKey && e.key.toLowerCase() === "k") {
      e.preventDefault();
      e.stopPropagation();
      if (open?.classList.contains("palette")) close();
      else openPalette();
    } else if (e.key === "?" && !e.ctrlKey && !e.metaKey && !e.altKey && !typingIn(e) && !open) {
      e.preventDefault();
      openHelp();
    }
  },
  true,
);
