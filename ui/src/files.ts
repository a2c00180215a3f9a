// Files of the session's machine: a tree (folders load when opened) that
// follows changes made in the machine (`files_changed` events), with new
// file and folder, rename, delete, upload (files or a whole folder picked,
// or files and folders dropped on the tree: `upload.ts`), download (a
// folder as a tar archive); a code editor (`editor.ts`; Ctrl+S saves)
// whose unsaved changes are guarded; search across files; and the Changes
// view (`changes.ts`).

import { api, type DirEntry, type SessionEvent } from "./api";
import { ChangesView } from "./changes";
import { bytes, h, notice, replace } from "./dom";
import type { CodeEditor } from "./editor";
import { filesApi } from "./files-api";
import "./files.css";
import { addGuard } from "./guard";
import { dropped, picked, type Upload } from "./upload";

/** Files larger than this open read-only as a notice, not in the editor. */
const MAX_EDIT = 2 << 20;

type Mode = "tree" | "search" | "changes";

function parentOf(path: string): string {
  const at = path.replace(/\/$/, "").lastIndexOf("/");
  return at <= 0 ? "/" : path.slice(0, at);
}

function nameOf(path: string): string {
  return path.replace(/\/$/, "").slice(path.replace(/\/$/, "").lastIndexOf("/") + 1);
}

function join(dir: string, name: string): string {
  return dir.replace(/\/$/, "") + "/" + name;
}

/** A name for a new entry: one path component. */
function validName(name: string | null): string | null {
  const n = name?.trim();
  if (!n || n === "." || n === ".." || n.includes("/") || n.includes("\0")) return null;
  return n;
}

export class FilesPane {
  readonly el: HTMLElement;
  private tree = h("div.tree#file-tree", { role: "tree" });
  /** The editor, loaded (its own chunk of the build) when the first file opens. */
  private editor: CodeEditor | null = null;
  private path = h("span.mono#file-path");
  private save = h("button.small.primary#file-save", { type: "button", disabled: true }, "Save");
  private status = h("span.muted#file-status", { role: "status" });
  private view = h("div.file-view", {}, notice("empty", "Pick a file to view or edit it."));
  private upload = h("input#file-upload", { type: "file", multiple: true, hidden: true, "aria-label": "Upload files" });
  private uploadDir = h("input#folder-upload", { type: "file", multiple: true, webkitdirectory: true, hidden: true, "aria-label": "Upload a folder" });
  private searchInput = h("input.small#file-search", { type: "search", placeholder: "Search in files", "aria-label": "Search in files", spellcheck: false });
  private searchResults = h("div.search-results#file-search-results");
  private changes: ChangesView;
  private side = h("div.files-side");
  private main = h("div.file-main");
  private modeButtons = new Map<Mode, HTMLButtonElement>();
  private mode: Mode = "tree";
  private open: string | null = null;
  private loaded = false;
  private root = "/root";
  /** Folders shown open, so a refresh keeps them open. */
  private expanded = new Set<string>();
  /** The folder new files, folders and uploads go to. */
  private target: string = this.root;
  private running = true;
  private removeGuard: () => void;
  /** Called when the editor's text becomes saved or unsaved. */
  onDirty: (dirty: boolean) => void = () => {};

  constructor(private readonly session: string) {
    this.changes = new ChangesView(session, (path, line) => void this.openAt(path, line));
    this.removeGuard = addGuard(() => (this.dirty() ? `${this.open} has unsaved changes.` : null));
    const rootInput = h("input.small#file-root", { value: this.root, "aria-label": "Folder", spellcheck: false });
    rootInput.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        this.root = rootInput.value.trim() || "/";
        this.target = this.root;
        this.expanded.clear();
        void this.refresh();
      }
    });
    this.save.addEventListener("click", () => void this.write());
    for (const input of [this.upload, this.uploadDir]) {
      input.addEventListener("change", () => {
        const files = [...(input.files ?? [])];
        input.value = "";
        let items: Upload[];
        try {
          items = picked(files);
        } catch (err) {
          this.say((err as Error).message);
          return;
        }
        void this.uploadFiles(this.target, items);
      });
    }
    this.searchInput.addEventListener("keydown", (e) => {
      if (e.key === "Enter") void this.search();
    });
    this.tree.addEventListener("dragover", (e) => {
      if (!e.dataTransfer?.types.includes("Files")) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = "copy";
      this.tree.classList.add("drop");
    });
    this.tree.addEventListener("dragleave", () => this.tree.classList.remove("drop"));
    this.tree.addEventListener("drop", (e) => {
      this.tree.classList.remove("drop");
      if (!e.dataTransfer?.files.length) return;
      e.preventDefault();
      // Entries are taken while the event lasts; folders are read after.
      const entries = [...e.dataTransfer.items].map((i) => i.webkitGetAsEntry?.() ?? null);
      const files = [...e.dataTransfer.files];
      const dir = this.dropTarget(e.target as HTMLElement);
      void (async () => {
        let items: Upload[];
        try {
          items = await dropped(entries, files);
        } catch (err) {
          this.say((err as Error).message);
          return;
        }
        await this.uploadFiles(dir, items);
      })();
    });
    const modeButton = (m: Mode, text: string) => {
      const b = h("button.small.seg", { type: "button", id: `files-mode-${m}`, "aria-pressed": String(m === this.mode), onclick: () => this.setMode(m) }, text);
      this.modeButtons.set(m, b);
      return b;
    };
    this.el = h(
      "section.pane.files-pane",
      {},
      h(
        "div.pane-head",
        {},
        h("strong", {}, "Files"),
        rootInput,
        h("span.seg-group", { role: "group", "aria-label": "View" }, modeButton("tree", "Tree"), modeButton("search", "Search"), modeButton("changes", "Changes")),
        h("span.grow"),
        h("button.small", { type: "button", onclick: () => void this.refresh(), title: "Refresh", "aria-label": "Refresh" }, "↻"),
      ),
      h("div.split", {}, this.side, this.main),
      this.upload,
      this.uploadDir,
    );
    this.setMode("tree");
  }

  private setMode(m: Mode): void {
    if (m !== this.mode && this.mode === "changes" && m !== "changes") replace(this.changes.view);
    this.mode = m;
    for (const [name, b] of this.modeButtons) b.setAttribute("aria-pressed", String(name === m));
    const head = h("div.pane-head", {}, this.path, h("span.grow"), this.status, this.save);
    if (m === "tree") {
      replace(
        this.side,
        h(
          "div.tree-tools",
          {},
          h("button.small#file-new", { type: "button", title: "New file in the selected folder", onclick: () => void this.create(false) }, "+ File"),
          h("button.small#folder-new", { type: "button", title: "New folder in the selected folder", onclick: () => void this.create(true) }, "+ Folder"),
          h("button.small#file-upload-button", { type: "button", title: "Upload files to the selected folder (or drop them on the tree)", onclick: () => this.upload.click() }, "Upload"),
          h("button.small#folder-upload-button", { type: "button", title: "Upload a folder, its folders kept, to the selected folder (or drop it on the tree)", onclick: () => this.uploadDir.click() }, "Upload folder"),
        ),
        this.tree,
      );
      replace(this.main, head, this.view);
    } else if (m === "search") {
      replace(
        this.side,
        h("form.search-form", { onsubmit: (e: Event) => (e.preventDefault(), void this.search()) }, this.searchInput, h("button.small", { type: "submit" }, "Search")),
        this.searchResults,
      );
      replace(this.main, head, this.view);
      this.searchInput.focus();
    } else {
      replace(this.side, this.changes.list);
      replace(this.main, this.changes.view);
      if (this.running) void this.changes.load(this.root);
    }
  }

  show(): void {
    if (!this.loaded || this.stale) void this.refresh();
  }

  /** Changes came while the tab was hidden: the tree is listed again when it shows. */
  private stale = false;

  /** Lets go of what the pane holds outside itself (the unsaved-changes guard). */
  dispose(): void {
    this.removeGuard();
  }

  /** Follows the session's state: a stopped machine's files are not reachable. */
  setRunning(running: boolean): void {
    if (running === this.running) return;
    this.running = running;
    if (this.loaded) void this.refresh();
  }

  /** Applies an event of the session's log: changed folders are listed again. */
  onEvent(e: SessionEvent): void {
    if ((e.type !== "files_changed" && e.type !== "restored") || !this.loaded || !this.running) return;
    // A hidden tab fetches nothing (the machine may be busy restarting); it
    // catches up when shown.
    if (this.el.offsetParent === null) {
      this.stale = true;
      return;
    }
    if (e.type === "restored" || e.overflow) this.pendingAll = true;
    else for (const dir of e.dirs) this.pendingDirs.add(dir);
    // A burst of events (a build, or the log replayed on load) is one
    // listing per folder.
    this.pendingTimer ||= window.setTimeout(() => {
      this.pendingTimer = 0;
      const all = this.pendingAll;
      const dirs = [...this.pendingDirs];
      this.pendingAll = false;
      this.pendingDirs.clear();
      if (all) void this.refresh();
      else for (const dir of dirs) if (this.listOf(dir)) void this.relist(dir);
    }, 150);
  }

  private pendingDirs = new Set<string>();
  private pendingAll = false;
  private pendingTimer = 0;

  async refresh(): Promise<void> {
    this.loaded = true;
    this.stale = false;
    if (!this.running) {
      replace(this.tree, notice("empty", "The session is not running. Start it to see its files."));
      return;
    }
    if (this.mode === "changes") void this.changes.load(this.root);
    replace(this.tree, notice("loading", "Loading…"));
    const ul = await this.dir(this.root);
    replace(this.tree, ul);
  }

  /** The list of a folder shown in the tree (the root's or an open folder's). */
  private listOf(dir: string): HTMLElement | null {
    return this.tree.querySelector(`[data-dir="${CSS.escape(dir)}"]`);
  }

  /** Lists a shown folder again, in place. */
  private async relist(dir: string): Promise<void> {
    if (!this.listOf(dir)) return;
    const fresh = await this.dir(dir);
    // What is shown now (an earlier relist may have replaced it meanwhile).
    this.listOf(dir)?.replaceWith(fresh);
  }

  /** The folder a drop on `el` goes to: the folder dropped on, a file's folder, or the selected one. */
  private dropTarget(el: HTMLElement): string {
    const item = el.closest("[data-path]") as HTMLElement | null;
    if (!item) return this.target;
    const path = item.dataset.path!;
    return item.classList.contains("dir") ? path : parentOf(path);
  }

  private select(path: string): void {
    this.target = path;
    for (const el of this.tree.querySelectorAll(".tree-item.selected")) el.classList.remove("selected");
    this.tree.querySelector(`.tree-item.dir[data-path="${CSS.escape(path)}"]`)?.classList.add("selected");
  }

  private async dir(path: string): Promise<HTMLElement> {
    let entries: DirEntry[];
    let ul: HTMLElement;
    try {
      entries = await api.list(this.session, path);
    } catch (e) {
      ul = notice("error", (e as Error).message);
      ul.dataset.dir = path;
      return ul;
    }
    entries.sort((a, b) => Number(b.kind === "dir") - Number(a.kind === "dir") || a.name.localeCompare(b.name));
    ul = h("ul", { role: "group", "data-dir": path });
    if (entries.length === 0) ul.appendChild(h("li.muted.tree-empty", {}, "(empty)"));
    for (const e of entries) ul.appendChild(this.item(path, e));
    return ul;
  }

  private actions(full: string, isDir: boolean): HTMLElement {
    const download = h("a.icon", {
      href: isDir ? filesApi.archiveUrl(this.session, full) : filesApi.fileUrl(this.session, full),
      download: isDir ? `${nameOf(full)}.tar` : nameOf(full),
      title: isDir ? "Download as a tar archive" : "Download",
      "aria-label": `Download ${nameOf(full)}`,
      "data-action": "download",
    }, "⤓");
    return h(
      "span.tree-actions",
      {},
      h("button.icon", { type: "button", title: "Rename", "aria-label": `Rename ${nameOf(full)}`, "data-action": "rename", onclick: () => void this.rename(full) }, "✎"),
      download,
      h("button.icon", { type: "button", title: "Delete", "aria-label": `Delete ${nameOf(full)}`, "data-action": "delete", onclick: () => void this.remove(full, isDir) }, "✕"),
    );
  }

  private item(path: string, e: DirEntry): HTMLElement {
    const full = join(path, e.name);
    if (e.kind === "dir") {
      const li = h("li", { role: "treeitem", "aria-expanded": "false" });
      const btn = h("button.tree-item.dir", { type: "button", "data-path": full }, `▸ ${e.name}`);
      let child: HTMLElement | null = null;
      const expand = async () => {
        btn.textContent = `▾ ${e.name}`;
        li.setAttribute("aria-expanded", "true");
        this.expanded.add(full);
        child = await this.dir(full);
        li.appendChild(child);
      };
      btn.addEventListener("click", async () => {
        this.select(full);
        if (child) {
          child.remove();
          child = null;
          this.expanded.delete(full);
          btn.textContent = `▸ ${e.name}`;
          li.setAttribute("aria-expanded", "false");
          return;
        }
        await expand();
      });
      li.appendChild(h("div.tree-row", {}, btn, this.actions(full, true)));
      if (this.expanded.has(full)) void expand();
      return li;
    }
    return h(
      "li",
      { role: "treeitem" },
      h(
        "div.tree-row",
        {},
        h("button.tree-item", { type: "button", "data-path": full, onclick: () => void this.read(full, e.size), title: bytes(e.size) }, e.name),
        this.actions(full, false),
      ),
    );
  }

  /** The editor, made on first use. */
  private async codeEditor(): Promise<CodeEditor> {
    if (!this.editor) {
      const { CodeEditor } = await import("./editor");
      this.editor ??= new CodeEditor(
        (dirty) => {
          this.save.disabled = !dirty;
          replace(this.status, dirty ? "modified" : "");
          this.onDirty(dirty);
        },
        () => void this.write(),
      );
    }
    return this.editor;
  }

  /** Whether the open file has unsaved changes. */
  private dirty(): boolean {
    return !!this.open && !!this.editor?.dirty();
  }

  private say(text: string): void {
    replace(this.status, text);
  }

  /** Asks before the open file's unsaved changes are dropped. */
  private mayDiscard(): boolean {
    return !this.dirty() || confirm(`Discard the changes to ${this.open}?`);
  }

  private async create(folder: boolean): Promise<void> {
    const name = validName(prompt(`New ${folder ? "folder" : "file"} in ${this.target}:`, ""));
    if (!name) return;
    const path = join(this.target, name);
    try {
      if (folder) await filesApi.mkdir(this.session, path);
      else {
        if (!this.mayDiscard()) return;
        await api.write(this.session, path, "");
      }
    } catch (e) {
      this.say((e as Error).message);
      return;
    }
    await this.relist(this.target);
    if (folder) this.say(`made ${path}`);
    else await this.read(path, 0, true);
  }

  private async rename(from: string): Promise<void> {
    const name = validName(prompt(`Rename ${from} to:`, nameOf(from)));
    if (!name || name === nameOf(from)) return;
    const to = join(parentOf(from), name);
    try {
      await filesApi.rename(this.session, from, to);
    } catch (e) {
      this.say((e as Error).message);
      return;
    }
    if (this.open === from || this.open?.startsWith(from + "/")) {
      this.open = to + this.open.slice(from.length);
      replace(this.path, this.open);
    }
    if (this.expanded.delete(from)) this.expanded.add(to);
    await this.relist(parentOf(from));
    this.say(`renamed to ${to}`);
  }

  private async remove(path: string, isDir: boolean): Promise<void> {
    if (!confirm(isDir ? `Delete the folder ${path} and everything in it?` : `Delete ${path}?`)) return;
    try {
      await filesApi.remove(this.session, path, isDir);
    } catch (e) {
      this.say((e as Error).message);
      return;
    }
    if (this.open === path || this.open?.startsWith(path + "/")) {
      this.open = null;
      this.editor?.saved(this.editor.text());
      replace(this.path);
      replace(this.view, notice("empty", `${path} was deleted.`));
    }
    this.expanded.delete(path);
    await this.relist(parentOf(path));
    this.say(`deleted ${path}`);
  }

  /**
   * Uploads files and makes folders (`rel`: their paths below `dir`, checked
   * by `upload.ts`), in order; a failure stops there and says how far it got.
   */
  private async uploadFiles(dir: string, items: Upload[]): Promise<void> {
    if (!this.running || items.length === 0) return;
    const files = items.filter((i) => i.file).length;
    let done = 0;
    const made = new Set<string>([dir]);
    const mkdir = async (folder: string) => {
      if (made.has(folder)) return;
      await filesApi.mkdir(this.session, folder, true);
      made.add(folder);
    };
    for (const { rel, file } of items) {
      try {
        if (!file) {
          await mkdir(join(dir, rel));
          continue;
        }
        this.say(`uploading ${rel} (${bytes(file.size)})…`);
        await mkdir(parentOf(join(dir, rel)));
        await filesApi.upload(this.session, join(dir, rel), file);
        done++;
      } catch (e) {
        await this.relist(dir);
        this.say(`upload stopped at ${rel}: ${(e as Error).message} (${done} of ${files} file${files === 1 ? "" : "s"} uploaded to ${dir}, the rest not)`);
        return;
      }
    }
    await this.relist(dir);
    const folders = items.length - files;
    this.say(`uploaded ${done} file${done === 1 ? "" : "s"}${folders ? ` and ${folders} folder${folders === 1 ? "" : "s"}` : ""} to ${dir}`);
  }

  private async search(): Promise<void> {
    const q = this.searchInput.value;
    if (!q.trim() || !this.running) return;
    replace(this.searchResults, notice("loading", "Searching…"));
    try {
      const r = await filesApi.search(this.session, this.root, q);
      const rows = r.matches.map((m) =>
        h(
          "li",
          {},
          h(
            "button.search-hit",
            { type: "button", "data-path": m.path, "data-line": m.line, onclick: () => void this.openAt(m.path, m.line, false) },
            h("span.mono.hit-where", {}, `${m.path.startsWith(this.root + "/") ? m.path.slice(this.root.length + 1) : m.path}:${m.line}`),
            h("span.mono.hit-text", {}, m.text.trim()),
          ),
        ),
      );
      replace(
        this.searchResults,
        h("p.muted#file-search-summary", {}, `${r.matches.length}${r.truncated ? "+" : ""} match${r.matches.length === 1 ? "" : "es"} (${r.tool})`),
        r.note ? h("p.muted.search-note", {}, r.note) : null,
        rows.length ? h("ul.search-list", {}, rows) : notice("empty", `Nothing under ${this.root} holds “${q}”.`),
      );
    } catch (e) {
      replace(this.searchResults, notice("error", (e as Error).message));
    }
  }

  /** Opens `path` (absolute, or relative to the folder) at `line`, in the tree view unless asked to stay. */
  async openAt(path: string, line: number, toTree = true): Promise<void> {
    const full = path.startsWith("/") ? path : join(this.root, path.replace(/^\.\//, ""));
    if (toTree && this.mode !== "tree") this.setMode("tree");
    if (!this.loaded) void this.refresh();
    if (this.open === full && this.editor) {
      this.editor.goToLine(line);
      return;
    }
    let size = 0;
    try {
      const st = await filesApi.stat(this.session, full);
      size = st.size;
    } catch (e) {
      this.say(`${full}: ${(e as Error).message}`);
      return;
    }
    if (await this.read(full, size)) this.editor?.goToLine(line);
  }

  /** Opens a file in the editor; false when it did not open as text. */
  private async read(path: string, size: number, skipAsk = false): Promise<boolean> {
    if (!skipAsk && path !== this.open && !this.mayDiscard()) return false;
    this.open = path;
    replace(this.path, path);
    this.save.disabled = true;
    replace(this.status);
    this.onDirty(false);
    if (size > MAX_EDIT) {
      replace(this.view, notice("empty", `${bytes(size)}: too large to edit here. Download it, or use the terminal.`));
      return false;
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
        return false;
      }
      const editor = await this.codeEditor();
      if (this.open !== path) return false;
      editor.load(path, text);
      replace(this.view, editor.el);
      return true;
    } catch (e) {
      replace(this.view, notice("error", (e as Error).message));
      return false;
    }
  }

  private async write(): Promise<void> {
    const editor = this.editor;
    if (!this.open || !editor?.dirty()) return;
    const text = editor.text();
    this.save.disabled = true;
    replace(this.status, "saving…");
    try {
      await api.write(this.session, this.open, text);
      editor.saved(text);
      replace(this.status, "saved");
    } catch (e) {
      this.save.disabled = false;
      replace(this.status, (e as Error).message);
    }
  }
}
