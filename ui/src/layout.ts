// A session page's layout: the agent chat and the tabs side by side with a
// splitter between them (its position remembered in localStorage), the chat
// collapsible to a rail (remembered too; collapsed by default where no model
// is configured). On a narrow screen (a phone) the chat and the tabs are two
// views switched by a bar at the top, each the full width. Also the tools of
// every page's top bar (palette, help, theme, notifications), the commands
// that go with them, and the not-found page.

import { h, replace } from "./dom";
import { navigate } from "./main";
import { notificationsOn, notificationsSupported, onNotificationsChange, setNotifications } from "./notify";
import { openHelp, openPalette, registerCommands } from "./palette";
import { onThemeChange, theme, toggleTheme } from "./theme";

const WIDTH_KEY = "firepit.chat.width";
const COLLAPSED_KEY = "firepit.chat.collapsed";
/** Narrower than this (CSS px), the chat and the tabs are views; `layout.css` says the same. */
export const NARROW = "(max-width: 760px)";
const MIN_CHAT = 260;
const MIN_WORK = 320;

export type View = "chat" | "work";

/** The width the chat takes before the person drags the splitter. */
function defaultWidth(total: number): number {
  return Math.round(Math.min(640, Math.max(320, total * 0.36)));
}

export class Workspace {
  readonly el: HTMLElement;
  private panes: HTMLElement;
  private slot: HTMLElement;
  private splitter: HTMLElement;
  private rail: HTMLButtonElement;
  private viewButtons = new Map<View, HTMLButtonElement>();
  private observer: ResizeObserver;
  private width: number | null;
  private collapsed: boolean;
  private explicit: boolean;

  constructor(chat: HTMLElement, work: HTMLElement) {
    const stored = Number(localStorage.getItem(WIDTH_KEY));
    this.width = Number.isFinite(stored) && stored > 0 ? stored : null;
    const c = localStorage.getItem(COLLAPSED_KEY);
    this.explicit = c === "1" || c === "0";
    this.collapsed = c === "1";

    this.slot = h("div.chat-slot", {}, chat);
    const collapse = h(
      "button.small.icon#chat-collapse",
      { type: "button", title: "Collapse the chat", "aria-label": "Collapse the chat", onclick: () => this.setCollapsed(true) },
      "«",
    );
    chat.querySelector(".pane-head")?.append(h("span.grow"), collapse);
    this.rail = h(
      "button.chat-rail#chat-rail",
      { type: "button", title: "Open the agent chat", "aria-label": "Open the agent chat", onclick: () => this.setCollapsed(false) },
      h("span", {}, "Agent chat ›"),
    );
    this.splitter = h("div.splitter#chat-splitter", {
      role: "separator",
      tabindex: 0,
      "aria-orientation": "vertical",
      "aria-label": "Resize the chat (arrows; Enter collapses; double-click resets)",
      "aria-valuemin": MIN_CHAT,
    });
    this.panes = h("div.panes", {}, this.slot, this.rail, this.splitter, work);
    const views = h(
      "nav.views",
      { "aria-label": "Views" },
      (
        [
          ["work", "Workspace"],
          ["chat", "Agent chat"],
        ] as [View, string][]
      ).map(([v, text]) => {
        const b = h("button.view", { type: "button", id: `view-${v}`, "aria-pressed": "false", onclick: () => this.showView(v) }, text);
        this.viewButtons.set(v, b);
        return b;
      }),
    );
    this.el = h("main.workspace", {}, views, this.panes);
    this.showView("work");
    this.drag();
    this.observer = new ResizeObserver(() => this.applyWidth());
    this.observer.observe(this.panes);
    this.applyCollapsed();
  }

  dispose(): void {
    this.observer.disconnect();
  }

  /** Whether the page is in its narrow (phone) layout. */
  narrow(): boolean {
    return window.matchMedia(NARROW).matches;
  }

  /** Without a model the chat starts collapsed, unless the person chose otherwise. */
  setModelConfigured(configured: boolean): void {
    this.rail.classList.toggle("no-model", !configured);
    this.rail.title = configured ? "Open the agent chat" : "Open the agent chat (no model is configured)";
    if (!this.explicit) {
      this.collapsed = !configured;
      this.applyCollapsed();
    }
  }

  isCollapsed(): boolean {
    return this.collapsed;
  }

  setCollapsed(c: boolean): void {
    this.collapsed = c;
    this.explicit = true;
    localStorage.setItem(COLLAPSED_KEY, c ? "1" : "0");
    this.applyCollapsed();
    if (c) this.rail.focus();
  }

  toggleChat(): void {
    if (this.narrow()) this.showView(this.el.dataset.view === "chat" ? "work" : "chat");
    else this.setCollapsed(!this.collapsed);
  }

  /** Makes the chat visible: opened if collapsed, its view on a phone. */
  openChat(): void {
    if (this.narrow()) this.showView("chat");
    else if (this.collapsed) this.setCollapsed(false);
  }

  /** On a phone: shows the chat or the tabs. (On a wide screen both show.) */
  showView(v: View): void {
    this.el.dataset.view = v;
    for (const [name, b] of this.viewButtons) b.setAttribute("aria-pressed", String(name === v));
  }

  private applyCollapsed(): void {
    this.el.dataset.chat = this.collapsed ? "collapsed" : "open";
    this.applyWidth();
  }

  /** The chat's width within what there is room for. */
  private applyWidth(): void {
    const total = this.panes.clientWidth;
    if (total === 0) return;
    const max = Math.max(MIN_CHAT, total - MIN_WORK);
    const w = Math.round(Math.min(max, Math.max(MIN_CHAT, this.width ?? defaultWidth(total))));
    this.el.style.setProperty("--chat-w", `${w}px`);
    this.splitter.setAttribute("aria-valuenow", String(w));
    this.splitter.setAttribute("aria-valuemax", String(max));
  }

  private setWidth(w: number | null): void {
    this.width = w === null ? null : Math.round(w);
    if (this.width === null) localStorage.removeItem(WIDTH_KEY);
    else localStorage.setItem(WIDTH_KEY, String(this.width));
    this.applyWidth();
  }

  private drag(): void {
    const s = this.splitter;
    s.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      e.preventDefault();
      s.setPointerCapture(e.pointerId);
      this.el.classList.add("dragging");
      const left = this.panes.getBoundingClientRect().left;
      const move = (m: PointerEvent) => this.setWidth(m.clientX - left);
      const up = () => {
        s.removeEventListener("pointermove", move);
        s.removeEventListener("pointerup", up);
        s.removeEventListener("pointercancel", up);
        this.el.classList.remove("dragging");
        // Stored as what it was clamped to.
        this.setWidth(Number(s.getAttribute("aria-valuenow")));
      };
      s.addEventListener("pointermove", move);
      s.addEventListener("pointerup", up);
      s.addEventListener("pointercancel", up);
    });
    s.addEventListener("dblclick", () => this.setWidth(null));
    s.addEventListener("keydown", (e) => {
      const now = Number(s.getAttribute("aria-valuenow"));
      const step = e.shiftKey ? 96 : 24;
      if (e.key === "ArrowLeft") this.setWidth(now - step);
      else if (e.key === "ArrowRight") this.setWidth(now + step);
      else if (e.key === "Home") this.setWidth(MIN_CHAT);
      else if (e.key === "End") this.setWidth(Number(s.getAttribute("aria-valuemax")));
      else if (e.key === "Enter") this.setCollapsed(true);
      else return;
      e.preventDefault();
    });
  }
}

/** The tools at the right of every page's top bar: palette, help, theme, notifications. */
export function topbarTools(): HTMLElement {
  const notify = h("button.small.icon.notify-toggle", {
    type: "button",
    onclick: () => void toggleNotifications(),
    hidden: !notificationsSupported(),
  });
  const themeButton = h("button.small.icon.theme-toggle", { type: "button", onclick: toggleTheme });
  const tools = h(
    "span.tools",
    {},
    h("button.small.icon#open-palette", { type: "button", title: "Command palette (Ctrl+K)", "aria-label": "Command palette", onclick: openPalette }, "⌘K"),
    h("button.small.icon#open-help", { type: "button", title: "Keyboard shortcuts (?)", "aria-label": "Keyboard shortcuts", onclick: openHelp }, "?"),
    themeButton,
    notify,
  );
  paintTools(tools);
  return tools;
}

/** Brings the tool buttons in line with the theme and the notification setting. */
function paintTools(root: ParentNode = document): void {
  const t = theme();
  for (const b of root.querySelectorAll<HTMLButtonElement>(".theme-toggle")) {
    const other = t === "dark" ? "light" : "dark";
    replace(b, t === "dark" ? "☾" : "☀");
    b.title = `Switch to the ${other} theme`;
    b.setAttribute("aria-label", `Switch to the ${other} theme`);
  }
  const on = notificationsOn();
  for (const b of root.querySelectorAll<HTMLButtonElement>(".notify-toggle")) {
    // The icon is the stylesheet's (a bell, struck through while off).
    b.setAttribute("aria-pressed", String(on));
    b.title = on ? "Notifications are on: turn them off" : "Notify me when the agent finishes or a problem appears while this tab is hidden";
    b.setAttribute("aria-label", on ? "Turn notifications off" : "Turn notifications on");
  }
}
onThemeChange(() => paintTools());
onNotificationsChange(() => paintTools());

/** A short message at the bottom of the page that goes away by itself. */
export function toast(text: string): void {
  const t = h("div.toast", { role: "status" }, text);
  document.body.appendChild(t);
  window.setTimeout(() => t.remove(), 6000);
}

async function toggleNotifications(): Promise<void> {
  const r = await setNotifications(!notificationsOn());
  toast(r.on ? "Notifications are on: you hear of the agent and of problems while this tab is hidden." : (r.why ?? "Notifications are off."));
}

/** A page for something that is not there, with the way back to the list. */
export function notFoundPage(title: string, text: string): HTMLElement {
  return h(
    "main.center.not-found#not-found",
    {},
    h("h1", {}, title),
    h("p", {}, text),
    h("p", {}, h("a.button.primary", { href: "/", "data-link": true }, "Back to the sessions")),
  );
}

// The commands of every page.
registerCommands(
  { id: "app.sessions", title: "Go to the sessions list", group: "Navigate", run: () => navigate("/") },
  {
    id: "app.new-session",
    title: "New session",
    group: "Sessions",
    run: () => {
      if (location.pathname !== "/") navigate("/");
      document.querySelector<HTMLButtonElement>("#new-session")?.click();
    },
  },
  { id: "app.theme", title: "Toggle light / dark theme", group: "View", run: toggleTheme },
  {
    id: "app.notifications",
    title: "Turn notifications on / off",
    group: "Settings",
    when: notificationsSupported,
    run: toggleNotifications,
  },
  { id: "app.help", title: "Keyboard shortcuts", group: "Help", keys: "?", run: openHelp },
);
