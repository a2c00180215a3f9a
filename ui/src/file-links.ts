// Paths in text (a problem's traceback) as links that open the file at the
// line in the Files tab. A link dispatches `firepit:open-file` (bubbling,
// detail `{ path, line }`); the session page opens it. Absolute paths are
// the machine's; a relative one (`lib/app.ex:12`, `src/main.rs:3:5`) is
// taken from the Files tab's folder when opened.

/** What a link opens. */
export interface FileLink {
  path: string;
  line: number;
}

// Python's `File "/x.py", line 3`, then `path:line` with an extension and
// (when relative) at least one folder. URLs (`http://…/app.js:1`) are not
// the machine's files, so a path right after `//` is skipped.
const PATTERN = /File "(\/[^"\n]{1,1024})", line (\d{1,9})|((?:\/|\b)[\w.@+-]*(?:\/[\w.@+-]+)+\.[A-Za-z0-9]{1,10}|\/[\w.@+-]+\.[A-Za-z0-9]{1,10}):(\d{1,9})/g;

/** The file references in `text`: `[start, end, link]`, in order. */
export function findLinks(text: string): [number, number, FileLink][] {
  const out: [number, number, FileLink][] = [];
  for (const m of text.matchAll(PATTERN)) {
    const start = m.index ?? 0;
    const path = m[1] ?? m[3];
    const line = Number(m[2] ?? m[4]);
    if (!path || !line) continue;
    if (text.slice(Math.max(0, start - 2), start) === "//" || /[a-z]:\/\/[^\s]*$/i.test(text.slice(Math.max(0, start - 200), start))) continue;
    out.push([start, start + m[0].length, { path, line }]);
  }
  return out;
}

/** `text` as text nodes and links (`a.file-link`). */
export function linkify(text: string): Node[] {
  const nodes: Node[] = [];
  let at = 0;
  for (const [start, end, link] of findLinks(text)) {
    if (start > at) nodes.push(document.createTextNode(text.slice(at, start)));
    const a = document.createElement("a");
    a.className = "file-link";
    a.href = "#files";
    a.dataset.path = link.path;
    a.dataset.line = String(link.line);
    a.title = `Open ${link.path} at line ${link.line}`;
    a.textContent = text.slice(start, end);
    a.addEventListener("click", (e) => {
      e.preventDefault();
      a.dispatchEvent(new CustomEvent<FileLink>("firepit:open-file", { bubbles: true, detail: link }));
    });
    nodes.push(a);
    at = end;
  }
  if (at < text.length) nodes.push(document.createTextNode(text.slice(at)));
  return nodes;
}
