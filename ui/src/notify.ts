// Browser notifications, opt-in: while the page is hidden (another tab, a
// minimised window), the end of an agent's turn and a problem the session
// reports show as system notifications. The setting is remembered in
// localStorage; turning it on asks the browser for permission, and it stays
// off when the browser refuses.

import type { SessionEvent } from "./api";

const KEY = "firepit.notifications";
const listeners: (() => void)[] = [];

/** Whether this browser can show notifications at all. */
export function notificationsSupported(): boolean {
  return "Notification" in window;
}

/** Whether the person turned notifications on and the browser allows them. */
export function notificationsOn(): boolean {
  return notificationsSupported() && localStorage.getItem(KEY) === "on" && Notification.permission === "granted";
}

/** Called whenever the setting changes. */
export function onNotificationsChange(f: () => void): void {
  listeners.push(f);
}

/**
 * Turns notifications on (asking the browser's permission first) or off.
 * Resolves to whether they are on afterwards, with why not when the
 * browser said no.
 */
export async function setNotifications(on: boolean): Promise<{ on: boolean; why?: string }> {
  try {
    if (!on) {
      localStorage.setItem(KEY, "off");
      return { on: false };
    }
    if (!notificationsSupported()) return { on: false, why: "This browser cannot show notifications." };
    let permission = Notification.permission;
    if (permission === "default") permission = await Notification.requestPermission();
    if (permission !== "granted") {
      localStorage.setItem(KEY, "off");
      return { on: false, why: "The browser blocks notifications for this site: allow them in its site settings." };
    }
    localStorage.setItem(KEY, "on");
    return { on: true };
  } finally {
    for (const f of listeners) f();
  }
}

/** What a notification for an event of the log says, if it gets one. */
export function notificationFor(session: string, e: SessionEvent): { title: string; body: string; tag: string } | null {
  if (e.type === "agent") {
    const item = e.item;
    if (item.type === "run_finished") {
      const title =
        item.reason === "done"
          ? "Agent finished its turn"
          : item.reason === "asked_user"
            ? "Agent is waiting for your answer"
            : item.reason === "error"
              ? "Agent stopped on an error"
              : `Agent stopped: ${item.reason.replace(/_/g, " ")}`;
      return { title, body: `Session ${session}`, tag: `firepit-${session}-agent` };
    }
    if (item.type === "run_stopped") return { title: "Agent stopped", body: `Session ${session}`, tag: `firepit-${session}-agent` };
    return null;
  }
  if (e.type === "problem") {
    // The machine wrote the summary: it is the body alone, plain and short;
    // the title is ours.
    const body = e.summary.length > 200 ? `${e.summary.slice(0, 200)}…` : e.summary;
    return { title: `Problem in ${session}`, body, tag: `firepit-${session}-problem` };
  }
  return null;
}

/** Shows a notification for a live event of the log while the page is hidden. */
export function notifyEvent(session: string, e: SessionEvent, live: boolean): void {
  if (!live || document.visibilityState !== "hidden" || !notificationsOn()) return;
  const n = notificationFor(session, e);
  if (!n) return;
  try {
    const shown = new Notification(n.title, { body: n.body, tag: n.tag });
    shown.onclick = () => {
      window.focus();
      shown.close();
    };
  } catch (err) {
    // Some browsers allow notifications from a service worker only.
    console.warn("notification failed", err);
  }
}
