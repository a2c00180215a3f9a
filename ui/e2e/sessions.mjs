// End-to-end test of sessions' names, labels, limits and usage (the list's
// in one request), the New session dialog, and the Preview tab (URL bar
// following the app, back and forward, the error-report switch, share
// links with a lifetime, listed and revoked, the sign-in page of a
// signed-out preview), in real headless Chromium driven by
// playwright-core. Started by `crates/firepit/tests/it/ui.rs`
// (`sessions_names_usage_and_preview_work_in_chromium`) with:
//
//   FIREPIT_URL       the daemon's UI origin (http://localhost:<port>)
//   FIREPIT_TOKEN     its API token
//   E2E_DEPS          a dir whose node_modules holds playwright-core
//   E2E_SHOTS         where each step's screenshots go (1440x900 and 390x844)
//   CHROMIUM          the browser executable (default /usr/bin/chromium)
//
// Each step prints `step <n> <name>: ok`; the first failure prints
// `FAILED <step>: <why>` and exits 1. Every step also checks that the page's
// console has no errors.

import { join } from "node:path";
import { url, token, shots, T, launchChromium } from "./harness.mjs";

async function api(method, path, body) {
  const r = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function ok(method, path, body) {
  const r = await api(method, path, body);
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

const browser = await launchChromium();
const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: url });
const page = await context.newPage();
page.setDefaultTimeout(T);
const consoleErrors = [];
/** Set while a step makes the daemon refuse a request on purpose (Chromium logs each refusal). */
let refusing = null;
page.on("console", (m) => {
  if (m.type() !== "error") return;
  if (refusing && refusing.test(`${m.text()} ${m.location().url ?? ""}`)) return;
  consoleErrors.push(`${m.text()} (${m.location().url ?? ""})`);
});
page.on("pageerror", (e) => consoleErrors.push(`uncaught: ${e.message}`));

let n = 0;
/** Runs a step; its screenshots are taken at 1440x900 and 390x844. */
async function step(name, f) {
  n++;
  const label = `${String(n).padStart(2, "0")}-${name}`;
  try {
    await f();
    await page.screenshot({ path: join(shots, `${label}.png`) });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: join(shots, `${label}-390.png`) });
    await page.setViewportSize({ width: 1440, height: 900 });
    if (consoleErrors.length) throw new Error(`console errors: ${consoleErrors.join(" | ")}`);
    console.log(`step ${n} ${name}: ok`);
  } catch (e) {
    try {
      await page.screenshot({ path: join(shots, `${label}-failed.png`) });
    } catch {
      // the page may be gone
    }
    console.log(`FAILED ${label}: ${e.stack ?? e}`);
    await browser.close();
    process.exit(1);
  }
}

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

let session = "";
let other = "";

await step("login", async () => {
  await page.goto(`${url}/?token=${encodeURIComponent(token)}`);
  await page.waitForURL(`${url}/`);
  await page.getByRole("button", { name: "New session" }).first().waitFor();
});

await step("dialog-refuses-too-much-memory", async () => {
  const host = await ok("GET", "/v1/host");
  await page.locator("#new-session").click();
  await page.locator("dialog.modal").waitFor();
  // The hint says what the host has, whole (not cut).
  await page.locator("#new-hint", { hasText: "This host has" }).waitFor();
  const clipped = await page.locator("#new-hint").evaluate((el) => el.scrollWidth > el.clientWidth);
  if (clipped) throw new Error("the dialog's hint is cut");
  // Every image once, with its size; the default one first and chosen.
  const images = (await ok("GET", "/v1/images")).map((i) => i.name);
  const options = await page.locator("#new-image option").allTextContents();
  const names = options.map((o) => o.split(" ")[0]);
  if (new Set(names).size !== names.length) throw new Error(`an image is listed twice: ${options}`);
  for (const i of images) if (!names.includes(i)) throw new Error(`image ${i} is not offered: ${options}`);
  if (names[0] !== host.default_image || !/\(\d/.test(options[0])) throw new Error(`the default image is not first with its size: ${options}`);
  if (options.some((o) => /default image/.test(o))) throw new Error(`a separate "default image" choice: ${options}`);
  // More memory than the host has is refused in the dialog…
  const tooMuch = Math.ceil(host.memory_bytes / 2 ** 30) + 100;
  await page.locator("#new-memory").fill(`${tooMuch}G`);
  await page.getByRole("button", { name: "Create" }).click();
  await page.locator("dialog .form-error", { hasText: "more than this host has" }).waitFor();
  // … and by the daemon, with a clear 409.
  const r = await api("POST", "/v1/sessions", { limits: { memory_bytes: tooMuch * 2 ** 30 } });
  if (r.status !== 409 || r.body.error.code !== "more_than_host") throw new Error(`the daemon answered ${r.status} ${JSON.stringify(r.body)}`);
  // No repository field without a forge token.
  if (await page.locator("#new-repo-row").isVisible()) throw new Error("a repository field without a forge");
});

await step("create-with-name-and-labels", async () => {
  await page.locator("#new-name").fill("checkout page");
  await page.locator("#new-labels").fill("team=web, ticket=42");
  await page.locator("#new-memory").fill("1G");
  await page.getByRole("button", { name: "Create" }).click();
  await page.waitForURL(/\/s\/[a-z0-9]+/);
  session = page.url().match(/\/s\/([a-z0-9]+)/)[1];
  await page.locator("#session-name", { hasText: "checkout page" }).waitFor();
  await page.locator("#session-labels .label-chip", { hasText: "team=web" }).waitFor();
  await page.locator("#session-limits", { hasText: "1.0 GiB memory" }).waitFor();
  const s = await ok("GET", `/v1/sessions/${session}`);
  if (s.name !== "checkout page" || s.labels.team !== "web" || s.labels.ticket !== "42") throw new Error(`made ${JSON.stringify(s)}`);
});

await step("usage-shown", async () => {
  // Two readings make a CPU share; memory is used / limit.
  await page.locator("#session-usage", { hasText: "% CPU" }).waitFor();
  const text = await page.locator("#session-usage").textContent();
  if (!/\d+(\.\d)? (KiB|MiB|GiB) \/ 1\.0 GiB/.test(text)) throw new Error(`usage says ${text}`);
  const u = await ok("GET", `/v1/sessions/${session}/usage`);
  if (!u.running || !(u.memory_bytes > 0) || !(u.cpu_usec > 0)) throw new Error(`usage ${JSON.stringify(u)}`);
});

await step("rename", async () => {
  await page.locator("#session-name").click();
  await page.locator("#rename-dialog").waitFor();
  await page.locator("#rename-name").fill("renamed app");
  await page.locator("#rename-labels").fill("team=api");
  // A bad label is refused with the daemon's message.
  refusing = new RegExp(`status of 400 .*\\/v1\\/sessions\\/${session}$`);
  await page.locator("#rename-labels").fill("Team=api");
  await page.locator("#rename-save").click();
  await page.locator("#rename-dialog .form-error", { hasText: "label key" }).waitFor();
  refusing = null;
  await page.locator("#rename-labels").fill("team=api");
  await page.locator("#rename-save").click();
  await page.locator("#session-name", { hasText: "renamed app" }).waitFor();
  await page.locator("#session-labels .label-chip", { hasText: "team=api" }).waitFor();
  const s = await ok("GET", `/v1/sessions/${session}`);
  if (s.name !== "renamed app" || JSON.stringify(s.labels) !== '{"team":"api"}') throw new Error(`renamed ${JSON.stringify(s)}`);
});

await step("list-search", async () => {
  other = (await ok("POST", "/v1/sessions", { name: "database work", labels: { team: "db" }, limits: { memory_bytes: 256 * 2 ** 20 } })).id;
  const filtered = await ok("GET", "/v1/sessions?label=team%3Ddb");
  if (filtered.length !== 1 || filtered[0].id !== other) throw new Error(`label filter gave ${JSON.stringify(filtered)}`);
  await page.locator("a.brand").click();
  await page.locator(`tr.session-row[data-id='${session}'] .name`, { hasText: "renamed app" }).waitFor();
  await page.locator(`tr.session-row[data-id='${other}'] .label-chip`, { hasText: "team=db" }).waitFor();
  // Live usage and limits in the list, every running session's read in one
  // request (`GET /v1/usage?ids=…`), none one by one.
  const usageReads = [];
  const onRequest = (r) => {
    const u = new URL(r.url());
    if (/^\/v1\/(sessions\/[^/]+\/)?usage$/.test(u.pathname)) usageReads.push(u);
  };
  page.on("request", onRequest);
  await page.locator(`tr.session-row[data-id='${session}'] .usage`, { hasText: "/ 1.0 GiB" }).waitFor();
  await page.locator(`tr.session-row[data-id='${other}'] .usage`, { hasText: "/ 256 MiB" }).waitFor();
  await waitFor("a read of both sessions' usage in one request", async () =>
    usageReads.some((u) => u.pathname === "/v1/usage" && [session, other].every((id) => u.searchParams.get("ids").split(",").includes(id))),
  );
  page.off("request", onRequest);
  const single = usageReads.filter((u) => u.pathname !== "/v1/usage");
  if (single.length) throw new Error(`the list read usage one session at a time: ${single.map((u) => u.pathname).join(", ")}`);
  const both = await ok("GET", `/v1/usage?ids=${session},${other},nosuchsession`);
  if (!both.usage[session]?.running || !both.usage[other]?.running || JSON.stringify(both.unknown) !== '["nosuchsession"]') {
    throw new Error(`GET /v1/usage gave ${JSON.stringify(both)}`);
  }
  await page.locator(`tr.session-row[data-id='${other}'] .limits`, { hasText: "256 MiB memory" }).waitFor();
  await page.locator("#session-filter").fill("team=db");
  await waitFor("only the db session", async () => (await page.locator("tr.session-row").count()) === 1);
  await page.locator(`tr.session-row[data-id='${other}']`).waitFor();
  await page.locator("#session-filter").fill("renamed");
  await page.locator(`tr.session-row[data-id='${session}']`).waitFor();
  if ((await page.locator("tr.session-row").count()) !== 1) throw new Error("the name search kept others");
  await page.locator("#session-filter").fill("nothing-like-this");
  await page.getByText('No session matches "nothing-like-this"').waitFor();
  await page.locator("#session-filter").fill("");
  await ok("DELETE", `/v1/sessions/${other}`);
});

/** The app inside the preview (the frame page's `#app`). */
const app = () => page.frameLocator("#preview-frame").frameLocator("#app");
const urlBar = () => page.locator("#preview-url").inputValue();

await step("preview-url-follows", async () => {
  const site = [
    "mkdir -p /tmp/site",
    `printf '<title>One</title><h1>Page one</h1><a id=to2 href=/two.html>to two</a>' > /tmp/site/index.html`,
    `printf '<title>Two</title><h1>Page two</h1><button id=push onclick="history.pushState({},%s,%s)">push</button>' "''" "'/two.html?step=2'" > /tmp/site/two.html`,
  ].join(" && ");
  const r = await fetch(`${url}/v1/sessions/${session}/exec`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ command: { shell: site } }),
  });
  if (!(await r.text()).includes('"code":0')) throw new Error("writing the site failed");
  await ok("POST", `/v1/sessions/${session}/services`, { name: "site", command: { shell: "cd /tmp/site && exec python3 -m http.server 8000" } });
  await page.goto(`${url}/s/${session}#preview`);
  await page.locator("#preview-port option[value='8000']").waitFor({ state: "attached" });
  await app().getByText("Page one").waitFor();
  await waitFor("the URL bar at /", async () => (await urlBar()).endsWith(`8000-${session}.localhost:${new URL(url).port}/`));
  await app().locator("#to2").click();
  await app().getByText("Page two").waitFor();
  await waitFor("the URL bar following to /two.html", async () => (await urlBar()).endsWith("/two.html"));
  // pushState in the app moves the bar too.
  await app().locator("#push").click();
  await waitFor("the URL bar at ?step=2", async () => (await urlBar()).endsWith("/two.html?step=2"));
});

await step("back-forward", async () => {
  await page.locator("#preview-back:not([disabled])").waitFor();
  await page.locator("#preview-back").click();
  await waitFor("back to /two.html", async () => (await urlBar()).endsWith("/two.html"));
  await page.locator("#preview-back").click();
  await app().getByText("Page one").waitFor();
  await waitFor("back to /", async () => (await urlBar()).endsWith("/"));
  await page.locator("#preview-forward:not([disabled])").waitFor();
  await page.locator("#preview-forward").click();
  await app().getByText("Page two").waitFor();
  await waitFor("forward to /two.html", async () => (await urlBar()).endsWith("/two.html"));
  // The UI itself stayed on the session's page.
  if (!page.url().includes(`/s/${session}`)) throw new Error(`the UI went to ${page.url()}`);
});

await step("preview-error-reports-switch", async () => {
  // The switch shows the session's setting (on by default) and the app's
  // pages carry the reporting script.
  const reportScript = () => app().locator('script[src$="/__firepit/report.js"]').count();
  await page.locator("#preview-reports:checked:not([disabled])").waitFor();
  if ((await ok("GET", `/v1/sessions/${session}/closed-loop`)).preview_reports !== true) throw new Error("the setting is not on by default");
  await waitFor("the report script in the app's page", async () => (await reportScript()) === 1);
  // Off: the daemon holds it, and a reloaded page comes as the app sent it.
  await page.locator("#preview-reports").uncheck();
  await waitFor("the setting off", async () => (await ok("GET", `/v1/sessions/${session}/closed-loop`)).preview_reports === false);
  await page.locator("#preview-reports:not(:checked):not([disabled])").waitFor();
  // (A page not in the browser's cache: a reload may revalidate and show the
  // cached copy, whose script's reports the daemon now drops.)
  await page.locator("#preview-url").fill("/index.html?reports=off");
  await page.locator("#preview-url").press("Enter");
  await app().getByText("Page one").waitFor();
  await waitFor("a page without the report script", async () => (await reportScript()) === 0);
  // A change made elsewhere shows in the switch (the session's events).
  await ok("PUT", `/v1/sessions/${session}/closed-loop`, { preview_reports: true });
  await page.locator("#preview-reports:checked").waitFor();
  // And back off, then on again, from the switch.
  await page.locator("#preview-reports").uncheck();
  await waitFor("the setting off again", async () => (await ok("GET", `/v1/sessions/${session}/closed-loop`)).preview_reports === false);
  await page.locator("#preview-reports:not([disabled])").check();
  await waitFor("the setting on again", async () => (await ok("GET", `/v1/sessions/${session}/closed-loop`)).preview_reports === true);
  // A reload of the whole page reads it from the daemon.
  await page.reload();
  await page.locator("#preview-reports:checked:not([disabled])").waitFor();
  // Back to the page the next steps share.
  await page.locator("#preview-port option[value='8000']").waitFor({ state: "attached" });
  await page.locator("#preview-url").fill("/two.html");
  await page.locator("#preview-url").press("Enter");
  await app().getByText("Page two").waitFor();
  await waitFor("the URL bar at /two.html", async () => (await urlBar()).endsWith("/two.html"));
});

let link = "";
await step("share-with-lifetime", async () => {
  await page.locator("#preview-share").click();
  if ((await page.locator("#share-path").inputValue()) !== "/two.html") throw new Error("the share is not of the page shown");
  await page.locator("#share-ttl").selectOption(String(86400));
  await page.locator("#share-make").click();
  link = await page.locator("#share-url").inputValue();
  if (!link.includes("/__firepit/share?token=") || !link.includes("next=%2Ftwo.html")) throw new Error(`share link ${link}`);
  const shares = await ok("GET", `/v1/sessions/${session}/shares`);
  const made = shares.find((s) => s.url === link);
  if (!made || made.path !== "/two.html" || made.expires_at - made.created_at !== 86400) throw new Error(`shares ${JSON.stringify(shares)}`);
  const fresh = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const p = await fresh.newPage();
  await p.goto(link);
  await p.getByText("Page two").waitFor();
  await fresh.close();
});

await step("shares-listed-and-revoked", async () => {
  const row = page.locator("#share-list tr.share-row");
  await row.first().waitFor();
  if ((await row.count()) !== 1) throw new Error(`${await row.count()} shares listed`);
  await row.locator(".share-revoke").click();
  await page.locator("#share-list", { hasText: "No share link works now." }).waitFor();
  const shares = await ok("GET", `/v1/sessions/${session}/shares`);
  if (!shares.every((s) => s.revoked)) throw new Error(`not revoked: ${JSON.stringify(shares)}`);
  const fresh = await browser.newContext();
  const p = await fresh.newPage();
  const resp = await p.goto(link);
  if (resp.status() !== 403) throw new Error(`a revoked link answered ${resp.status()}`);
  await p.getByText("revoked").waitFor();
  await fresh.close();
});

await step("signed-out-sign-in-page", async () => {
  const fresh = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const p = await fresh.newPage();
  const preview = `http://8000-${session}.localhost:${new URL(url).port}/two.html`;
  const resp = await p.goto(preview);
  if (resp.status() !== 401) throw new Error(`a signed-out preview answered ${resp.status()}`);
  if (!(resp.headers()["content-type"] ?? "").startsWith("text/html")) throw new Error(`the sign-in page is ${resp.headers()["content-type"]}`);
  await p.getByRole("heading", { name: "Sign in to firepit" }).waitFor();
  if ((await p.content()).includes('"unauthorized"')) throw new Error("raw JSON shown");
  await p.screenshot({ path: join(shots, `${String(n).padStart(2, "0")}-sign-in-page.png`) });
  // Signing in there goes on to the preview.
  await p.locator("#sign-in input[name=token]").fill(token);
  await p.locator("#sign-in button").click();
  await p.getByText("Page two").waitFor();
  if (!p.url().startsWith(preview)) throw new Error(`signed in to ${p.url()}`);
  // API clients still get JSON.
  const api401 = await fetch(`${url}/v1/preview-auth?next=${encodeURIComponent(preview)}`);
  if (api401.status !== 401 || !(api401.headers.get("content-type") ?? "").includes("json")) throw new Error("the API's 401 is no longer JSON");
  await fresh.close();
});

await browser.close();
