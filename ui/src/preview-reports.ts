// The preview's switch for error reports: the session's `preview_reports`
// setting (`GET`/`PUT /v1/sessions/{id}/closed-loop`). On, the preview puts
// its reporting script into the app's HTML pages, and their uncaught
// exceptions and failed requests become the session's problems; off, pages
// reach the browser byte for byte as the app sent them. The switch shows
// what the daemon holds: read when the pane opens, followed through the
// session's `closed_loop` events (a change made elsewhere), and put back
// when a change is refused.

import { json, type ClosedLoopSettings, type SessionEvent } from "./api";
import { h } from "./dom";
import "./preview-reports.css";

const TITLE =
  "Error reports: the preview adds a small script to the app's pages, so their uncaught errors and failed requests show as problems the agent can see. Off, pages are served exactly as the app sends them.";

export class PreviewReportsSwitch {
  readonly el: HTMLElement;
  private box = h("input#preview-reports", { type: "checkbox", disabled: true });
  private path: string;

  constructor(session: string) {
    this.path = `/v1/sessions/${encodeURIComponent(session)}/closed-loop`;
    this.el = h(
      "label.preview-reports",
      { title: TITLE },
      this.box,
      h("span.text", {}, "Error reports"),
    );
    this.box.addEventListener("change", () => void this.put(this.box.checked));
  }

  /** Reads the setting from the daemon. */
  async load(): Promise<void> {
    try {
      this.show(await json<ClosedLoopSettings>("GET", this.path));
    } catch (e) {
      this.failed(`could not read the setting: ${(e as Error).message}`);
    }
  }

  /** Follows a change made elsewhere (another window, the CLI, the agent's tools). */
  onEvent(e: SessionEvent): void {
    if (e.type === "closed_loop") this.show({ wake_agent: e.wake_agent as boolean, preview_reports: e.preview_reports !== false });
  }

  private async put(on: boolean): Promise<void> {
    this.box.disabled = true;
    try {
      this.show(await json<ClosedLoopSettings>("PUT", this.path, { preview_reports: on }));
    } catch (e) {
      this.box.checked = !on;
      this.box.disabled = false;
      this.failed(`the change was refused: ${(e as Error).message}`);
    }
  }

  private show(s: ClosedLoopSettings): void {
    this.box.checked = s.preview_reports;
    this.box.disabled = false;
    this.el.classList.remove("failed");
    this.el.removeAttribute("aria-description");
    this.el.title = TITLE;
    this.el.dataset.state = s.preview_reports ? "on" : "off";
  }

  private failed(why: string): void {
    this.el.classList.add("failed");
    this.el.setAttribute("aria-description", why);
    this.el.title = `Error reports: ${why}`;
  }
}
