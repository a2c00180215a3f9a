// Files of the session's machine: a tree (directories load when opened), a
// viewer and editor for text files, save with Ctrl+S.

import { api, type DirEntry } from "./api";
import { bytes, h, notice, replace } from "./dom";

/** Files larger than this open read-only as a notice, not in the editor. */
const MAX_EDIT = 2 << 20;

export class FilesPane {
  readonly el: HTMLElement;
  private tree = h("div.tree#file-tree", { role: "tree" });
  private editor = h("textarea.editor#file-editor", { spellcheck: false, "aria-label": "File contents" });
  private path = h("span.mono#file-path");
  private save = h("button.small.primary#file-save", { type: "button", disabled: true }, "Save");
  private status = h("span.muted#file-status");
  private view = h("div.file-view", {}, notice("empty", "Pick a file to view or edit it."));
  private open: string | null = null;
  private loaded = false;
  private root = "/root";

  constructor(private readonly session: string) {
    const rootInput = h("input.small#file-root", { value: this.root, "aria-label": "Folder", spellcheck: false });
    rootInput.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        this.root = rootInput.value.trim() || "/";
        void this.refresh();
      }
    });
    this.save.addEventListener("click", () => void this.write());
    this.editor.addEventListener("input", () => {
      this.save.disabled = false;
      replace(this.status, "modified");
    });
    this.editor.addEventListener("keydown", (e) => {
      if ((e.ctrlKey || e.metaKey) && e.key === "s") {
        e.preventDefault();
        void this.write();
      }
    });
    this.el = h(
      "section.pane.files-pane",
      {},
      h("div.pane-head", {}, h("strong", {}, "Files"), rootInput, h("button.small", { type: "button", onclick: () => void this.refresh(), title: "Refresh" }, "↻")),
      h("div.split", {}, this.tree, h("div.file-main", {}, h("div.pane-head", {}, this.path, h("span.grow"), this.status, this.save), this.view)),
    );
  }

  private running = true;

  show(): void {
    if (!this.loaded) void this.refresh();
  }

  /** Follows the session's state: a stopped machine's files are not reachable. */
  setRunning(running: boolean): void {
    if (running === this.running) return;
    this.running = running;
    if (this.loaded) void this.refresh();
  }

  async refresh(): Promise<void> {
    this.loaded = true;
    if (!this.running) {
      replace(this.tree, notice("empty", "The session is not running. Start it to see its files."));
      return;
    }
    replace(this.tree, notice("loading", "Loading…"));
    const ul = await this.dir(this.root);
    replace(this.tree, ul);
  }

  private async dir(path: string): Promise<HTMLElement> {
    let entries: DirEntry[];
    try {
      entries = await api.list(this.session, path);
    } catch (e) {
      return notice("error", (e as Error).message);
    }
    if (entries.length === 0) return h("p.muted.tree-empty", {}, "(empty)");
    entries.sort((a, b) => Number(b.kind === "dir") - Number(a.kind === "dir") || a.name.localeCompare(b.name));
    return h(
      "ul",
      { role: "group" },
      entries.map((e) => {
        const full = path.replace(/\/$/, "") + "/" + e.name;
        if (e.kind === "dir") {
          const li = h("li", { role: "treeitem", "aria-expanded": "false" });
          const btn = h("button.tree-item.dir", { type: "button", "data-path": full }, `▸ ${e.name}`);
          let child: HTMLElement | null = null;
          btn.addEventListener("click", async () => {
            if (child) {
              child.remove();
              child = null;
              btn.textContent = `▸ ${e.name}`;
              li.setAttribute("aria-expanded", "false");
              return;
            }
            btn.textContent = `▾ ${e.name}`;
            li.setAttribute("aria-expanded", "true");
            child = await this.dir(full);
            li.appendChild(child);
          });
          li.appendChild(btn);
          return li;
        }
        return h(
          "li",
          { role: "treeitem" },
          h("button.tree-item", { type: "button", "data-path": full, onclick: () => void this.read(full, e.size), title: bytes(e.size) }, e.name),
        );
      }),
    );
  }

  private async read(path: string, size: number): Promise<void> {
    if (this.open && !this.save.disabled && !confirm(`Discard the changes to ${this.open}?`)) return;
    this.open = path;
    replace(this.path, path);
    this.save.disabled = true;
    replace(this.status);
    if (size > MAX_EDIT) {
      replace(this.view, notice("empty", `${bytes(size)}: too large to edit here. Use the terminal.`));
      return;
    }
    replace(this.view, notice("loading", "Loading…"));
    try {
      const buf = await api.read(this.session, path);
      let text: string;
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(buf);
        if (text.includes("\0")) throw new Error("binary");
      } catch {
        replace(this.view, notice("empty", `A binary file (${bytes(buf.byteLength)}).`));
        return;
      }
      this.editor.value = text;
      replace(this.view, this.editor);
    } catch (e) {
      replace(this.view, notice("error", (e as Error).message));
    }
  }

  private async write(): Promise<void> {
    if (!this.open || this.save.disabled) return;
    this.save.disabled = true;
    replace(this.status, "saving…");
    try {
      await api.write(this.session, this.open, this.editor.value);
      replace(this.status, "saved");
    } catch (e) {
      this.save.disabled = false;
      replace(this.status, (e as Error).message);
    }
  }
}
