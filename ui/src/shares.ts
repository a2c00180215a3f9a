// Share links of a session's previews: make one for the page the preview
// shows, with a lifetime; list the links that still work, copy or revoke
// them (`/v1/sessions/{id}/shares`).

import { api, ApiError, type Share } from "./api";
import { h, replace } from "./dom";

/** The lifetimes offered, in seconds (the daemon allows 1 s to 30 days). */
export const LIFETIMES: [string, number][] = [
  ["15 minutes", 15 * 60],
  ["1 hour", 3600],
  ["8 hours", 8 * 3600],
  ["1 day", 86400],
  ["7 days", 7 * 86400],
  ["30 days", 30 * 86400],
];

/** "in 59m", "in 6d", "expired". */
export function expiresIn(expiresAt: number, nowSeconds = Date.now() / 1000): string {
  const s = Math.floor(expiresAt - nowSeconds);
  if (s <= 0) return "expired";
  if (s < 60) return `in ${s}s`;
  if (s < 3600) return `in ${Math.round(s / 60)}m`;
  if (s < 86400) return `in ${Math.round(s / 3600)}h`;
  return `in ${Math.round(s / 86400)}d`;
}

export class SharesPanel {
  readonly el = h("div.share-out.shares-panel#shares-panel", { hidden: true });
  private port = 0;
  private pathField = h("input#share-path", { "aria-label": "Page to share", spellcheck: false });
  private lifetime = h(
    "select#share-ttl",
    { "aria-label": "Link lifetime" },
    LIFETIMES.map(([label, secs]) => h("option", { value: secs, selected: secs === 3600 }, label)),
  );
  private make = h("button.small.primary#share-make", { type: "button" }, "Make link");
  private made = h("div.share-made");
  private list = h("div.share-list#share-list");

  constructor(private readonly session: string) {
    this.make.addEventListener("click", () => void this.create());
    replace(
      this.el,
      h(
        "div.share-form",
        {},
        h("span", {}, "Share"),
        this.pathField,
        h("span.muted", {}, "for"),
        this.lifetime,
        this.make,
        h("button.small#share-close", { type: "button", title: "Close", onclick: () => this.hide() }, "×"),
      ),
      this.made,
      this.list,
    );
  }

  /** Opens the panel for `port` at `path`, or closes it when open. */
  toggle(port: number, path: string): void {
    if (!this.el.hidden) {
      this.hide();
      return;
    }
    this.port = port;
    this.pathField.value = path;
    replace(this.made);
    this.el.hidden = false;
    void this.refresh();
  }

  hide(): void {
    this.el.hidden = true;
  }

  private async create(): Promise<void> {
    this.make.disabled = true;
    try {
      const s = await api.share(this.session, this.port, Number(this.lifetime.value), this.pathField.value.trim() || "/");
      const field = h("input#share-url", { readonly: true, value: s.url, "aria-label": "Share link" });
      let copied = "Copied to the clipboard.";
      try {
        await navigator.clipboard.writeText(s.url);
      } catch {
        copied = "Select it and copy.";
      }
      replace(this.made, h("span", {}, `Link made; it works ${expiresIn(s.expires_at)} (${new Date(s.expires_at * 1000).toLocaleString()}). ${copied}`), field);
      field.select();
      await this.refresh();
    } catch (e) {
      replace(this.made, h("span.form-error", {}, e instanceof ApiError ? e.message : String(e)));
    } finally {
      this.make.disabled = false;
    }
  }

  /** Lists the links that still work, newest first, each with Copy and Revoke. */
  private async refresh(): Promise<void> {
    let shares: Share[];
    try {
      shares = await api.shares(this.session);
    } catch (e) {
      replace(this.list, h("span.form-error", {}, (e as Error).message));
      return;
    }
    const now = Date.now() / 1000;
    const active = shares.filter((s) => !s.revoked && s.expires_at > now).sort((a, b) => b.created_at - a.created_at);
    if (active.length === 0) {
      replace(this.list, h("span.muted", {}, "No share link works now."));
      return;
    }
    replace(
      this.list,
      h(
        "table.table.shares",
        {},
        h("thead", {}, h("tr", {}, ["Port", "Page", "Expires", ""].map((t) => h("th", {}, t)))),
        h(
          "tbody",
          {},
          active.map((s) =>
            h(
              "tr.share-row",
              { "data-share": s.id },
              h("td.mono", {}, `:${s.port}`),
              h("td.mono", {}, s.path),
              h("td", { title: new Date(s.expires_at * 1000).toLocaleString() }, expiresIn(s.expires_at, now)),
              h(
                "td",
                {},
                h(
                  "div.actions",
                  {},
                  h("button.small", { type: "button", onclick: () => void navigator.clipboard.writeText(s.url).catch(() => {}) }, "Copy"),
                  h(
                    "button.small.danger.share-revoke",
                    {
                      type: "button",
                      onclick: async () => {
                        try {
                          await api.revokeShare(this.session, s.id);
                        } catch (e) {
                          replace(this.made, h("span.form-error", {}, (e as Error).message));
                        }
                        await this.refresh();
                      },
                    },
                    "Revoke",
                  ),
                ),
              ),
            ),
          ),
        ),
      ),
    );
  }
}
