// End-to-end test of the web UI's layout and global tools in real headless
// Chromium, driven by playwright-core: the splitter between the chat and the
// tabs (dragged, remembered over a reload), the collapsible chat, the phone
// layout at 390×844 (no horizontal scroll, every control reachable), 1280×720
// and 3840×2160, the light and dark themes, the command palette, the shortcut
// help, the not-found page, the Start button over a stopped session's
// terminal, browser notifications, and the chat collapsed where no model is
// configured. Started by `crates/firepit/tests/it/ui_layout.rs`, which runs a
// daemon with a stand-in model and passes:
//
//   FIREPIT_URL, FIREPIT_TOKEN                   the daemon (a model configured)
//   FIREPIT_URL_NO_MODEL, FIREPIT_TOKEN_NO_MODEL a second daemon with no model (optional)
//   E2E_DEPS      a dir whose node_modules holds playwright-core
//   E2E_SHOTS     where each step's screenshots go (at 1440×900 and 390×844)
//   CHROMIUM      the browser executable (default /usr/bin/chromium)
//   E2E_DIST      optional, for working on the UI: serve the page and its
//                 assets from this `vite build` output instead of the daemon's
//
// Each step prints `step <n> <name>: ok`; the first failure prints
// `FAILED <step>: <why>` and exits 1. Every step also checks that the page's
// console has no errors.

import { existsSync, readFileSync } from "node:fs";
import { extname, join } from "node:path";
import { need, url, token, shots, T, launchChromium } from "./harness.mjs";

const WIDE = { width: 1440, height: 900 };
const PHONE = { width: 390, height: 844 };
// A page served by the test (E2E_DIST) has no address, so Chromium would
// keep it from the daemon's sockets on localhost.
const browser = await launchChromium(process.env.E2E_DIST ? ["--disable-features=LocalNetworkAccessChecks"] : []);
const context = await browser.newContext({ viewport: WIDE, colorScheme: "dark" });
await context.grantPermissions(["notifications"], { origin: url });
// Notifications the page shows are recorded (headless Chromium shows none).
await context.addInitScript(() => {
  const Real = window.Notification;
  if (!Real) return;
  window.__notes = [];
  class Recorded extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notes.push({ title, body: options?.body ?? "" });
    }
  }
  window.Notification = Recorded;
});
await serveDist(context);
const page = await context.newPage();
page.setDefaultTimeout(T);
const consoleErrors = [];
page.on("console", (m) => {
  if (m.type() !== "error") return;
  // Chromium itself logs the 404 that tells the page a session is missing.
  if (/404/.test(m.text()) && /\/v1\/sessions\/nosuchsession$/.test(m.location().url ?? "")) return;
  consoleErrors.push(`${m.text()} (${m.location().url ?? ""})`);
});
page.on("pageerror", (e) => consoleErrors.push(`uncaught: ${e.message}`));

/** With E2E_DIST, the page and its assets come from a local build. */
async function serveDist(ctx) {
  const dist = process.env.E2E_DIST;
  if (!dist) return;
  const types = { ".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml", ".woff2": "font/woff2" };
  // Only the page's own paths: the API and its sockets go to the daemon untouched.
  const ours = (u) => u.protocol === "http:" && u.hostname === "localhost" && !u.pathname.startsWith("/v1/") && !u.searchParams.has("token");
  await ctx.route(ours, (route) => {
    const req = route.request();
    const u = new URL(req.url());
    if (u.pathname.startsWith("/assets/") && existsSync(join(dist, u.pathname))) {
      return route.fulfill({ body: readFileSync(join(dist, u.pathname)), contentType: types[extname(u.pathname)] ?? "application/octet-stream" });
    }
    if (req.resourceType() === "document") return route.fulfill({ body: readFileSync(join(dist, "index.html")), contentType: "text/html" });
    return route.fallback();
  });
}

let n = 0;
/** A step: its work, then a screenshot at 1440×900 and one at 390×844. */
async function step(name, f, { sizes = [WIDE, PHONE] } = {}) {
  n++;
  const label = `${String(n).padStart(2, "0")}-${name}`;
  try {
    await f();
    const was = page.viewportSize();
    for (const size of sizes) {
      await page.setViewportSize(size);
      await settle();
      await page.screenshot({ path: join(shots, `${label}-${size.width}.png`) });
    }
    await page.setViewportSize(was);
    await settle();
    if (consoleErrors.length) throw new Error(`console errors: ${consoleErrors.join(" | ")}`);
    console.log(`step ${n} ${name}: ok`);
  } catch (e) {
    try {
      await page.screenshot({ path: join(shots, `${label}-failed.png`) });
    } catch {
      // the page may be gone
    }
    console.log(`FAILED ${label}: ${e.stack ?? e}${consoleErrors.length ? `\nconsole errors: ${consoleErrors.join(" | ")}` : ""}`);
    await browser.close();
    process.exit(1);
  }
}

/** Screenshots in the middle of a step (a dialog open), at both sizes. */
async function shotBoth(what) {
  const was = page.viewportSize();
  for (const size of [WIDE, PHONE]) {
    await page.setViewportSize(size);
    await settle();
    await page.screenshot({ path: join(shots, `${String(n).padStart(2, "0")}-${what}-${size.width}.png`) });
  }
  await page.setViewportSize(was);
  await settle();
}

/** Two animation frames: layout and resize observers have run. */
const settle = () => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));

async function waitFor(what, f) {
  const deadline = Date.now() + T;
  let last;
  while (Date.now() < deadline) {
    last = await f();
    if (last) return last;
    await page.waitForTimeout(100);
  }
  throw new Error(`gave up waiting for ${what}`);
}

async function api(method, path, body, base = url, tok = token) {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${tok}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  return r.status === 204 ? null : r.json();
}

/** The page scrolls sideways nowhere. */
async function noSidewaysScroll(where) {
  const [sw, iw] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  if (sw > iw) {
    // Name the widest elements that reach past the window, so the fix is clear.
    const wide = await page.evaluate((iw) =>
      [...document.querySelectorAll("body *")]
        .map((e) => [e, e.getBoundingClientRect()])
        .filter(([, r]) => r.right > iw + 1 && r.width > 0)
        .sort((a, b) => b[1].right - a[1].right)
        .slice(0, 5)
        .map(([e, r]) => `${e.tagName.toLowerCase()}${e.id ? "#" + e.id : ""}.${[...e.classList].join(".")} (right ${Math.round(r.right)})`),
      iw,
    );
    throw new Error(`${where}: the page is ${sw} px wide in a ${iw} px window: ${wide.join(", ")}`);
  }
}

/** The element is shown, wholly inside the window, and nothing covers its
 * middle (what the middle hits is it, inside it, or around it: a disabled
 * control lets the pointer through to its parent). */
async function reachable(selector) {
  const el = page.locator(selector).first();
  await el.waitFor({ state: "visible" });
  const r = await el.evaluate((e) => {
    const b = e.getBoundingClientRect();
    const hit = document.elementFromPoint(b.left + b.width / 2, b.top + b.height / 2);
    return { left: b.left, top: b.top, right: b.right, bottom: b.bottom, w: innerWidth, h: innerHeight, covered: !!hit && !e.contains(hit) && !hit.contains(e) };
  });
  if (r.left < 0 || r.top < 0 || r.right > r.w + 0.5 || r.bottom > r.h + 0.5) {
    throw new Error(`${selector} is outside the ${r.w}×${r.h} window: ${JSON.stringify(r)}`);
  }
  if (r.covered) throw new Error(`${selector} is covered by another element`);
}

const chatWidth = () => page.locator(".chat-slot").evaluate((e) => e.getBoundingClientRect().width);
const theme = () => page.evaluate(() => document.documentElement.dataset.theme);

/**
 * The terminal as painted: the commonest colour of a screenshot of the main
 * terminal's pane (its background), read back through a canvas, with the
 * computed backgrounds of xterm's viewport and scrolling element.
 */
async function terminalColours() {
  await page.locator("#tab-terminal").click();
  await page.locator("#terminal .xterm-screen").waitFor();
  await settle();
  const png = await page.locator("#terminal").screenshot();
  return page.evaluate(async (b64) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const c = document.createElement("canvas");
    c.width = img.width;
    c.height = img.height;
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    const count = new Map();
    for (let i = 0; i < d.length; i += 4) {
      const k = `${d[i]},${d[i + 1]},${d[i + 2]}`;
      count.set(k, (count.get(k) ?? 0) + 1);
    }
    const painted = [...count].sort((a, b) => b[1] - a[1])[0][0].split(",").map(Number);
    const bg = (sel) => getComputedStyle(document.querySelector(`#terminal ${sel}`)).backgroundColor;
    return { painted, viewport: bg(".xterm-viewport"), scrollable: bg(".xterm-scrollable-element") };
  }, png.toString("base64"));
}

/** Waits until the terminal is painted light (or dark) all through. */
async function terminalIs(want) {
  let seen;
  const rgb = (s) => s.match(/\d+/g).slice(0, 3).map(Number);
  const light = ([r, g, b]) => 0.2126 * r + 0.7152 * g + 0.0722 * b > 200;
  const dark = ([r, g, b]) => 0.2126 * r + 0.7152 * g + 0.0722 * b < 60;
  const ok = want === "light" ? light : dark;
  try {
    await waitFor(`a ${want} terminal`, async () => {
      seen = await terminalColours();
      return ok(seen.painted) && ok(rgb(seen.viewport)) && ok(rgb(seen.scrollable));
    });
  } catch {
    throw new Error(`the terminal is not ${want} in the ${await theme()} theme: ${JSON.stringify(seen)}`);
  }
}

let session = "";

await step("login", async () => {
  await page.goto(`${url}/?token=${encodeURIComponent(token)}`);
  await page.waitForURL(`${url}/`);
  await page.goto(`${url}/`); // the page itself, not the sign-in's redirect (E2E_DIST serves it)
  await page.locator("#new-session").waitFor();
  const made = await api("POST", "/v1/sessions", {});
  session = made.id;
  // Problems only show; they do not wake the stand-in model.
  await api("PUT", `/v1/sessions/${session}/closed-loop`, { wake_agent: false });
  await page.locator(`tr.session-row[data-id='${session}'] .state.running`).waitFor();
});

await step("sessions-list-phone", async () => {
  await page.setViewportSize(PHONE);
  await settle();
  await noSidewaysScroll("the sessions list");
  await reachable(`tr.session-row[data-id='${session}'] button.danger`);
  await reachable("#new-session");
  await page.setViewportSize(WIDE);
});

await step("splitter", async () => {
  await page.goto(`${url}/s/${session}`);
  await page.locator(".topbar .state.running").waitFor();
  await page.locator(".terminal-pane .conn-status.ok").waitFor();
  await page.locator(".workspace[data-chat='open'] .chat-slot").waitFor();
  const before = await chatWidth();
  const box = await page.locator("#chat-splitter").boundingBox();
  const x = box.x + box.width / 2;
  const y = box.y + box.height / 2;
  await page.mouse.move(x, y);
  await page.mouse.down();
  await page.mouse.move(x + 100, y, { steps: 4 });
  await page.mouse.move(x + 200, y, { steps: 4 });
  await page.mouse.up();
  await settle();
  const after = await chatWidth();
  if (Math.abs(after - (before + 200)) > 3) throw new Error(`the chat is ${after} px after a 200 px drag from ${before}`);
  const stored = await page.evaluate(() => localStorage.getItem("firepit.chat.width"));
  if (Math.abs(Number(stored) - after) > 3) throw new Error(`stored width ${stored}, shown ${after}`);
  // The keyboard moves it too.
  await page.locator("#chat-splitter").focus();
  await page.keyboard.press("ArrowLeft");
  await settle();
  const keyed = await chatWidth();
  if (Math.abs(keyed - (after - 24)) > 2) throw new Error(`ArrowLeft made the chat ${keyed} px from ${after}`);
  await page.reload();
  await page.locator(".workspace[data-chat='open'] .chat-slot").waitFor();
  await settle();
  const reloaded = await chatWidth();
  if (Math.abs(reloaded - keyed) > 2) throw new Error(`after a reload the chat is ${reloaded} px, was ${keyed}`);
  // It cannot squeeze the tabs away.
  const b2 = await page.locator("#chat-splitter").boundingBox();
  await page.mouse.move(b2.x + 2, b2.y + 10);
  await page.mouse.down();
  await page.mouse.move(WIDE.width - 5, b2.y + 10, { steps: 5 });
  await page.mouse.up();
  const work = await page.locator(".panes > .work").evaluate((e) => e.getBoundingClientRect().width);
  if (work < 300) throw new Error(`dragged all the way, the tabs keep ${work} px`);
  await page.locator("#chat-splitter").dblclick(); // back to the default
  await settle();
  if (await page.evaluate(() => localStorage.getItem("firepit.chat.width"))) throw new Error("a double-click did not reset the width");
});

await step("collapse", async () => {
  const termBefore = await page.locator("#terminal").evaluate((e) => e.getBoundingClientRect().width);
  await page.locator("#chat-collapse").click();
  await page.locator(".workspace[data-chat='collapsed']").waitFor();
  if (await page.locator(".chat-slot").isVisible()) throw new Error("the collapsed chat still shows");
  await reachable("#chat-rail");
  await settle();
  const termAfter = await page.locator("#terminal").evaluate((e) => e.getBoundingClientRect().width);
  if (termAfter <= termBefore + 100) throw new Error(`the terminal did not widen: ${termBefore} → ${termAfter}`);
  await page.reload();
  await page.locator(".workspace[data-chat='collapsed']").waitFor();
  await reachable("#chat-rail");
  await page.locator("#chat-rail").click();
  await page.locator(".workspace[data-chat='open']").waitFor();
  await reachable("#chat-input");
  // Alt+\ toggles it from the keyboard.
  await page.keyboard.press("Alt+Backslash");
  await page.locator(".workspace[data-chat='collapsed']").waitFor();
  await page.keyboard.press("Alt+Backslash");
  await page.locator(".workspace[data-chat='open']").waitFor();
});

await step(
  "phone-390",
  async () => {
    await page.setViewportSize(PHONE);
    await settle();
    await noSidewaysScroll("the session page");
    for (const sel of [".topbar button.danger", "#view-work", "#view-chat", ".theme-toggle", "#open-palette"]) await reachable(sel);
    // The tabs' view: every tab, Share in the preview, Timeline.
    await page.locator("#view-work").click();
    for (const t of ["terminal", "preview", "browser", "services", "files", "timeline"]) await reachable(`#tab-${t}`);
    for (const t of ["terminal", "preview", "browser", "services", "files", "timeline"]) {
      await page.locator(`#tab-${t}`).click();
      await page.locator(`#tab-${t}[aria-selected=true]`).waitFor();
      await settle();
      await noSidewaysScroll(`the ${t} tab`);
      if (t === "preview") for (const sel of ["#preview-share", "#preview-port", "#preview-url", "#preview-reload"]) await reachable(sel);
      await page.screenshot({ path: join(shots, `${String(n).padStart(2, "0")}-phone-390-tab-${t}.png`) });
    }
    // The chat's view: its input and Send, nothing over the tab bar (it is not shown).
    await page.locator("#view-chat").click();
    await reachable("#chat-input");
    await reachable("#chat-send");
    await reachable(".topbar button.danger");
    await noSidewaysScroll("the chat view");
    await page.screenshot({ path: join(shots, `${String(n).padStart(2, "0")}-phone-390-chat.png`) });
    // Alt+1 goes back to the tabs' view.
    await page.locator("#chat-input").blur();
    await page.keyboard.press("Alt+1");
    await page.locator(".workspace[data-view='work']").waitFor();
    await reachable("#tab-terminal");
  },
  { sizes: [PHONE, WIDE] },
);

await step("desktop-1280", async () => {
  await page.setViewportSize({ width: 1280, height: 720 });
  await settle();
  await noSidewaysScroll("1280×720");
  for (const sel of ["#chat-input", "#chat-send", "#tab-timeline", ".topbar button.danger", "#chat-splitter", "#terminal"]) await reachable(sel);
  await page.screenshot({ path: join(shots, `${String(n).padStart(2, "0")}-desktop-1280x720.png`) });
  await page.setViewportSize(WIDE);
});

await step("4k-3840", async () => {
  await page.setViewportSize({ width: 3840, height: 2160 });
  await settle();
  await noSidewaysScroll("3840×2160");
  // Scaled: text is not 13 px on a 4K screen.
  const px = await page.locator("#tab-terminal").evaluate((e) => {
    const zoom = Number(getComputedStyle(document.documentElement).zoom) || 1;
    return parseFloat(getComputedStyle(e).fontSize) * zoom;
  });
  if (px < 16) throw new Error(`tab labels are ${px} px on a 3840 px screen`);
  for (const sel of ["#chat-input", "#tab-timeline", ".topbar button.danger", "#terminal"]) await reachable(sel);
  // The chat keeps a readable width; the terminal fits its pane.
  const chat = await chatWidth();
  if (chat > 3840 * 0.4) throw new Error(`the chat is ${chat} px wide`);
  const [screen, host] = await page.evaluate(() => [
    document.querySelector("#terminal .xterm-screen").getBoundingClientRect().right,
    document.querySelector("#terminal").getBoundingClientRect().right,
  ]);
  if (screen > host + 1) throw new Error(`the terminal's screen (to ${screen}) overflows its pane (to ${host})`);
  await page.screenshot({ path: join(shots, `${String(n).padStart(2, "0")}-4k-3840x2160.png`) });
  await page.goto(`${url}/`);
  await page.locator(`tr.session-row[data-id='${session}']`).waitFor();
  await noSidewaysScroll("the sessions list at 3840×2160");
  await page.screenshot({ path: join(shots, `${String(n).padStart(2, "0")}-4k-3840x2160-list.png`) });
  await page.setViewportSize(WIDE);
  await page.goto(`${url}/s/${session}`);
  await page.locator(".terminal-pane .conn-status.ok").waitFor();
});

await step("theme", async () => {
  // No pick: the system's scheme.
  if ((await theme()) !== "dark") throw new Error(`a dark system got ${await theme()}`);
  await page.emulateMedia({ colorScheme: "light" });
  await waitFor("the light theme to follow the system", async () => (await theme()) === "light");
  await page.emulateMedia({ colorScheme: "dark" });
  await waitFor("the dark theme to follow the system", async () => (await theme()) === "dark");
  const darkBg = await page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor);
  await terminalIs("dark");
  // The toggle picks, and the pick is remembered; the open terminal follows.
  await page.locator(".topbar .theme-toggle").click();
  await waitFor("the light theme", async () => (await theme()) === "light");
  await terminalIs("light");
  await page.reload();
  await page.locator(".topbar .state.running").waitFor();
  if ((await theme()) !== "light") throw new Error("the picked theme was forgotten over a reload");
  // A terminal made in the light theme starts light.
  await terminalIs("light");
  const lightBg = await page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor);
  if (lightBg === darkBg || lightBg !== "rgb(255, 255, 255)") throw new Error(`backgrounds: dark ${darkBg}, light ${lightBg}`);
  const label = await page.locator(".topbar .theme-toggle").getAttribute("aria-label");
  if (!/dark/.test(label)) throw new Error(`the toggle says ${label}`);
});

await step("palette", async () => {
  await page.locator("#tab-terminal").click();
  await page.locator("#terminal").click(); // the terminal has the keys: Ctrl+K still opens the palette
  await page.keyboard.press("Control+k");
  await page.locator("dialog.palette[open] #palette-input").waitFor();
  await page.keyboard.type("timeline");
  const shown = await page.locator(".palette-item").allTextContents();
  if (!shown.some((t) => t.includes("Go to Timeline"))) throw new Error(`the palette lists ${shown.join(" | ")}`);
  await shotBoth("palette-open");
  await page.keyboard.press("Enter");
  await page.locator("#tab-timeline[aria-selected=true]").waitFor();
  if (await page.locator("dialog.palette").count()) throw new Error("the palette stayed open");
  // Cmd+K too, and a command chosen with the arrows.
  await page.keyboard.press("Meta+k");
  await page.locator("dialog.palette[open]").waitFor();
  await page.keyboard.type("theme");
  await page.keyboard.press("ArrowDown"); // wraps around a list of one
  await page.keyboard.press("Enter");
  await waitFor("the dark theme", async () => (await theme()) === "dark");
  await terminalIs("dark");
  await page.locator("#tab-timeline").click(); // where the palette left it
  // The button opens it, a click runs a command, Escape closes.
  await page.locator("#open-palette").click();
  await page.locator("#palette-input").fill("toggle chat");
  await page.locator(".palette-item", { hasText: "Toggle the agent chat" }).click();
  await page.locator(".workspace[data-chat='collapsed']").waitFor();
  await page.keyboard.press("Control+k");
  await page.locator("#palette-input").fill("");
  await shotBoth("palette-all");
  await page.locator("#palette-input").fill("no such command at all");
  await page.locator(".palette-empty").waitFor();
  await page.keyboard.press("Escape");
  await page.locator("dialog.palette").waitFor({ state: "detached" });
  await page.locator("#chat-rail").click();
  await page.locator(".workspace[data-chat='open']").waitFor();
});

await step("shortcut-help", async () => {
  await page.locator("#tab-timeline").click();
  await page.locator("#tab-timeline").blur();
  await page.keyboard.press("?");
  const help = page.locator("dialog.help[open] #shortcut-help");
  await help.waitFor();
  const text = await help.textContent();
  for (const want of ["Ctrl+K", "Alt+1", "Go to Terminal", "Alt+0"]) if (!text.includes(want)) throw new Error(`the help lacks ${want}: ${text}`);
  await shotBoth("shortcut-help-open");
  await page.keyboard.press("Escape");
  await page.locator("dialog.help").waitFor({ state: "detached" });
  // Typed in the chat, `?` is a character, not the help.
  await page.locator("#chat-input").fill("");
  await page.locator("#chat-input").type("why?");
  if (await page.locator("dialog.help").count()) throw new Error("`?` in the chat opened the help");
  if ((await page.locator("#chat-input").inputValue()) !== "why?") throw new Error("the chat lost the `?`");
  await page.locator("#chat-input").fill("");
});

await step("stopped-terminal-start", async () => {
  await page.keyboard.press("Alt+1");
  // Stopped from the palette.
  await page.keyboard.press("Control+k");
  await page.locator("#palette-input").fill("stop the session");
  await page.keyboard.press("Enter");
  await page.locator(".topbar .state.stopped").waitFor();
  await reachable("#terminal-start");
  await page.screenshot({ path: join(shots, `${String(n).padStart(2, "0")}-stopped-terminal-start-before.png`) });
  await page.locator("#terminal-start").click();
  await page.locator(".topbar .state.running").waitFor();
  await page.locator("#terminal-stopped").waitFor({ state: "hidden" });
  await page.locator(".terminal-pane .conn-status.ok").waitFor();
});

/** Makes the page hidden (another tab in front), or says so where it cannot. */
async function hidePage() {
  const other = await context.newPage();
  await other.bringToFront();
  const hidden = await page.evaluate(() => document.visibilityState);
  if (hidden === "hidden") return other;
  await other.close();
  // Headless Chromium keeps every tab visible: say it the page's own way.
  await page.evaluate(() => {
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
    Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
    document.dispatchEvent(new Event("visibilitychange"));
  });
  console.log("note: a tab behind another stays visible here; the page was told it is hidden");
  return null;
}

async function showPage(other) {
  if (other) {
    await page.bringToFront();
    await other.close();
  } else {
    await page.evaluate(() => {
      delete document.visibilityState;
      delete document.hidden;
      document.dispatchEvent(new Event("visibilitychange"));
    });
  }
  if ((await page.evaluate(() => document.visibilityState)) !== "visible") throw new Error("the page is still hidden");
}

await step("notifications", async () => {
  const toggle = page.locator(".topbar .notify-toggle");
  if ((await toggle.getAttribute("aria-pressed")) !== "false") throw new Error("notifications are on before they were asked for");
  await toggle.click();
  await page.locator(".topbar .notify-toggle[aria-pressed='true']").waitFor();
  await page.locator(".toast", { hasText: "Notifications are on" }).waitFor();
  if ((await page.evaluate(() => localStorage.getItem("firepit.notifications"))) !== "on") throw new Error("the setting is not remembered");
  // Visible: a finished turn shows no notification.
  await page.locator("#chat-input").fill("first turn");
  await page.locator("#chat-input").press("Enter");
  await page.locator(".msg.assistant", { hasText: "First turn done." }).waitFor();
  await page.locator(".run-end").first().waitFor();
  if ((await page.evaluate(() => window.__notes.length)) !== 0) throw new Error("a visible page notified");
  // Hidden: the end of a turn and a problem notify.
  await page.locator("#chat-input").fill("second turn");
  const other = await hidePage();
  await page.locator("#chat-input").press("Enter");
  await page.locator(".msg.assistant", { hasText: "Second turn done." }).waitFor({ state: "attached" });
  const turn = await waitFor("a notification of the finished turn", () => page.evaluate(() => window.__notes.find((x) => x.title.startsWith("Agent"))));
  if (turn.title !== "Agent finished its turn" || !turn.body.includes(session)) throw new Error(`the notification: ${JSON.stringify(turn)}`);
  await api("POST", `/v1/sessions/${session}/services`, { name: "crasher", command: { shell: "python3 -c 'print(1 // 0)'; exec sleep 100000" } });
  const problem = await waitFor("a notification of the problem", () => page.evaluate(() => window.__notes.find((x) => x.title.startsWith("Problem"))));
  if (!problem.body.includes("ZeroDivisionError")) throw new Error(`the problem notification: ${JSON.stringify(problem)}`);
  await showPage(other);
  // Off again: remembered off.
  await page.locator(".topbar .notify-toggle").click();
  await page.locator(".topbar .notify-toggle[aria-pressed='false']").waitFor();
});

await step("not-found", async () => {
  await page.goto(`${url}/s/nosuchsession`);
  const nf = page.locator("#not-found");
  await nf.locator("h1", { hasText: "No such session" }).waitFor();
  const text = await page.locator(".page").textContent();
  if (/firepit ls|`/.test(text)) throw new Error(`the page gives CLI advice: ${text}`);
  await nf.getByRole("link", { name: "Back to the sessions" }).click();
  await page.waitForURL(`${url}/`);
  await page.locator(`tr.session-row[data-id='${session}']`).waitFor();
  // The list puts its sessions in the palette.
  await page.keyboard.press("Control+k");
  await page.locator("#palette-input").fill(session);
  await page.locator(".palette-item", { hasText: `Open session ${session}` }).waitFor();
  await page.keyboard.press("Enter");
  await page.waitForURL(`${url}/s/${session}`);
  await page.locator(".topbar .state.running").waitFor();
  // And a session's page reaches New session on the list.
  await page.keyboard.press("Control+k");
  await page.locator("#palette-input").fill("new session");
  await page.keyboard.press("Enter");
  await page.waitForURL(`${url}/`);
  await page.locator("dialog.modal[open] form").waitFor();
  await page.keyboard.press("Escape");
  await page.locator("dialog.modal").waitFor({ state: "detached" });
  await page.goto(`${url}/no/such/page`);
  await page.locator("#not-found h1", { hasText: "Not found" }).waitFor();
  await reachable("#not-found a");
});

const bare = process.env.FIREPIT_URL_NO_MODEL;
if (bare) {
  const bareToken = need("FIREPIT_TOKEN_NO_MODEL");
  await step("no-model-collapsed", async () => {
    const { id } = await api("POST", "/v1/sessions", {}, bare, bareToken);
    await page.goto(`${bare}/?token=${encodeURIComponent(bareToken)}`);
    await page.goto(`${bare}/s/${id}`);
    await page.locator(".workspace[data-chat='collapsed']").waitFor();
    await reachable("#chat-rail.no-model");
    await shotBoth("no-model-rail");
    await page.locator("#chat-rail").click();
    await page.locator(".guidance strong", { hasText: "No model is configured." }).waitFor();
    await reachable("#chat-input");
  });
}

await browser.close();
console.log(`ui layout e2e: ${n} steps passed, screenshots in ${shots}`);
process.exit(0);
