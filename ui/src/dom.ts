// Small DOM helpers: element construction without a framework.

type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;
type Child = Node | string | null | undefined | false;

/** The tag of a spec like `button.primary#send` (classes, then the id last). */
type TagOf<S extends string> = S extends `${infer T}.${string}`
  ? TagOf<T>
  : S extends `${infer T}#${string}`
    ? T
    : S;
type ElementOf<S extends string> = TagOf<S> extends keyof HTMLElementTagNameMap
  ? HTMLElementTagNameMap[TagOf<S>]
  : HTMLElement;

/** Makes an element: `h("button.primary#send", { onclick }, "Go")`. */
export function h<S extends string>(spec: S, attrs: Attrs = {}, ...children: (Child | Child[])[]): ElementOf<S> {
  const [rest, id] = spec.split("#");
  const [tag, ...classes] = rest.split(".");
  const el = document.createElement(tag) as ElementOf<S>;
  if (id) el.id = id;
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") {
      el.addEventListener(k.slice(2), v as EventListener);
    } else if (k === "class") {
      el.className = [el.className, String(v)].filter(Boolean).join(" ");
    } else if (v === true) {
      el.setAttribute(k, "");
    } else {
      el.setAttribute(k, String(v));
    }
  }
  append(el, ...children);
  return el;
}

/** Appends children, flattening arrays and skipping empty ones. */
export function append(el: Node, ...children: (Child | Child[])[]): void {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  }
}

/** Replaces an element's children. */
export function replace(el: Node, ...children: (Child | Child[])[]): void {
  while (el.firstChild) el.removeChild(el.firstChild);
  append(el, ...children);
}

/** "3m", "2h", "5d": how long ago a unix time (seconds) was. */
export function age(unixSeconds: number): string {
  const s = Math.max(0, Math.floor(Date.now() / 1000 - unixSeconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

/** 1.5 GiB, 512 MiB, 10 KiB. */
export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

/** A clock time for an event's unix milliseconds. */
export function clock(ms: number): string {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

/** A state shown in place of content: loading, empty, or an error. */
export function notice(kind: "loading" | "empty" | "error", text: string, ...more: Child[]): HTMLElement {
  return h(`div.notice`, { class: kind, role: kind === "error" ? "alert" : "status" }, h("p", {}, text), ...more);
}
