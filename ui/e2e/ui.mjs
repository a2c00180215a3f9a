// End-to-end test of the web UI in real headless Chromium (Debian's package),
// driven by playwright-core. Started by `crates/firepit/tests/it/ui.rs`, which
// runs a daemon with a stand-in model and passes:
//
//   FIREPIT_URL       the daemon's UI origin (http://localhost:<port>)
//   FIREPIT_TOKEN     its API token
//   E2E_DEPS          a dir whose node_modules holds playwright-core
//   E2E_SHOTS         where each step's screenshot goes
//   CHROMIUM          the browser executable (default /usr/bin/chromium)
//
// Each step prints `step <n> <name>: ok`; the first failure prints
// `FAILED <step>: <why>` and exits 1. Every step also checks that the page's
// console has no errors.

import { join } from "node:path";
import { need, url, token, shots, T, launchChromium } from "./harness.mjs";

/** Runs a command in the session through the API (not the UI), for setup only. */
async function exec(session, line) {
  const r = await fetch(`${url}/v1/sessions/${session}/exec`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ command: { shell: line } }),
  });
  const text = await r.text();
  if (!r.ok || !text.includes('"exit"')) throw new Error(`exec ${line}: ${r.status} ${text}`);
}

const browser = await launchChromium();
const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
const page = await context.newPage();
page.setDefaultTimeout(T);
const consoleErrors = [];
let liveRouteMissing = false;
let daemonDown = false;
page.on("console", (m) => {
  if (m.type() !== "error") return;
  // While the daemon restarts, Chromium itself logs each connection it cut
  // and each refused reconnect.
  if (
    daemonDown &&
    (/^WebSocket connection to 'ws:\/\/[^']*\/v1\/sessions\/[a-z0-9]+\/(events\/ws|pty\/main)[^']*' failed/.test(m.text()) ||
      /^Failed to load resource: net::ERR_(INCOMPLETE_CHUNKED_ENCODING|CONNECTION_REFUSED|CONNECTION_RESET|EMPTY_RESPONSE)/.test(m.text()))
  )
    return;
  // The one error the page cannot prevent: Chromium logs a failed WebSocket
  // handshake itself. A daemon built without the browser live view answers
  // its route with 404, and the pane shows that state; anything else counts.
  if (/\/browser\/live' failed: Error during WebSocket handshake: Unexpected response code: 404/.test(m.text())) {
    liveRouteMissing = true;
    return;
  }
  consoleErrors.push(`${m.text()} (${m.location().url ?? ""})`);
});
page.on("pageerror", (e) => consoleErrors.push(`uncaught: ${e.message}`));

// The event stream's sockets go through this route, so a step can cut the
// page off from the daemon (a network drop) and let it back.
const eventSockets = new Set();
let dropping = false;
await page.routeWebSocket(/\/events\/ws/, (ws) => {
  if (dropping) {
    ws.close({ code: 1001, reason: "network drop" });
    return;
  }
  const server = ws.connectToServer();
  eventSockets.add({ ws, server });
});

let n = 0;
async function step(name, f) {
  n++;
  const label = `${String(n).padStart(2, "0")}-${name}`;
  try {
    await f();
    await page.screenshot({ path: join(shots, `${label}.png`) });
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

/** The visible text lines of the xterm.js terminal. */
const terminalLines = () =>
  page.evaluate(() => Array.from(document.querySelectorAll("#terminal .xterm-rows > div"), (d) => d.textContent.trim()));

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

await step("login", async () => {
  await page.goto(`${url}/?token=${encodeURIComponent(token)}`);
  await page.waitForURL(`${url}/`);
  await page.getByRole("button", { name: "New session" }).first().waitFor();
  await page.getByText("No sessions yet").waitFor();
});

await step("new-session", async () => {
  await page.keyboard.press("n"); // the shortcut opens the dialog
  await page.locator("dialog.modal").waitFor();
  await page.locator("#new-memory").fill("1G");
  await page.locator("#new-pids").fill("4096");
  await page.getByRole("button", { name: "Create" }).click();
  await page.waitForURL(/\/s\/[a-z0-9]+/);
  session = page.url().match(/\/s\/([a-z0-9]+)/)[1];
  await page.locator("#session-id", { hasText: session }).waitFor();
  await page.locator(".topbar .state.running").waitFor();
  await page.locator("#events-status.ok").waitFor();
  await page.locator(".terminal-pane .conn-status.ok").waitFor();
  const made = await api("GET", `/v1/sessions/${session}`);
  if (made.limits.memory_bytes !== 2 ** 30 || made.limits.pids !== 4096) throw new Error(`limits ${JSON.stringify(made.limits)}`);
});

await step("terminal-echo", async () => {
  await page.locator("#terminal").click();
  await page.keyboard.type("echo hi\n");
  await waitFor("`hi` on a line of its own", async () => (await terminalLines()).includes("hi"));
});

await step("preview", async () => {
  await page.keyboard.type("python3 -m http.server 8000\n");
  await page.keyboard.press("Alt+2"); // the Preview tab, from the keyboard
  await page.locator("#tab-preview[aria-selected=true]").waitFor();
  await page.locator("#preview-port option[value='8000']").waitFor({ state: "attached" });
  // The app is framed through the preview host's frame page (`#app` in it).
  const frame = page.frameLocator("#preview-frame").frameLocator("#app");
  await frame.getByText("Directory listing for /").waitFor();
  const src = await page.locator("#preview-frame").getAttribute("src");
  if (!src.startsWith(`http://8000-${session}.localhost:`)) throw new Error(`the preview frames ${src}`);
  const sandbox = (await page.locator("#preview-frame").getAttribute("sandbox")) || "";
  for (const flag of ["allow-scripts", "allow-same-origin", "allow-forms"]) {
    if (!sandbox.split(" ").includes(flag)) throw new Error(`the preview frame's sandbox lacks ${flag}: ${sandbox}`);
  }
  if (sandbox.includes("allow-top-navigation")) throw new Error(`the preview frame may navigate the UI: ${sandbox}`);
});

await step("chat", async () => {
  await page.locator("#chat-input").fill("look around please");
  await page.locator("#chat-input").press("Enter");
  await page.locator(".msg.user", { hasText: "look around please" }).waitFor();
  await page.locator(".msg.assistant", { hasText: "Let me look around." }).waitFor();
  const tool = page.locator("details.tool[data-tool-id='call_1']");
  await tool.locator(".tool-name", { hasText: "exec" }).waitFor();
  await page.locator("details.tool[data-tool-id='call_1'].done").waitFor();
  await tool.locator("summary").click(); // expand: the arguments and the result
  await tool.locator(".tool-result", { hasText: "from-the-agent" }).waitFor();
  await page.locator(".msg.assistant", { hasText: "All done here." }).waitFor();
  await page.locator(".msg.assistant pre.code", { hasText: "from-the-agent" }).waitFor();
  await page.locator(".run-end").first().waitFor();
  // The reply streamed: the log has its deltas, the chat shows it once.
  const deltas = await page.locator("#timeline tr[data-type='agent.assistant_delta']").count();
  if (deltas < 2) throw new Error(`${deltas} streamed deltas in the log`);
  const usage = await page.locator("#chat-usage").textContent();
  if (!/\b100 in · 20 out\b/.test(usage)) throw new Error(`the token counter says ${usage}`);
});

await step("browser-tab", async () => {
  await page.keyboard.press("Alt+3");
  await page.locator("#tab-browser[aria-selected=true]").waitFor();
  // No browser runs in this session: the live view says so (or, on a daemon
  // without the route, that it is unavailable), without console errors.
  await page.locator(".browser-body[data-state='not-started']").waitFor();
  if (liveRouteMissing) console.log("note: this daemon has no browser live view route (404); the pane says so");
});

await step("browser-live-view", async () => {
  // The live view's side of the contract, against a socket that speaks it
  // (frames from whatever daemon this is are covered by its own tests).
  const jpeg = (await page.screenshot({ type: "jpeg", quality: 60, clip: { x: 0, y: 0, width: 320, height: 200 } })).toString("base64");
  const viewer = await context.newPage();
  viewer.on("console", (m) => m.type() === "error" && consoleErrors.push(`viewer: ${m.text()}`));
  let acks = 0;
  await viewer.routeWebSocket(/\/browser\/live$/, (ws) => {
    ws.onMessage(() => acks++);
    ws.send(JSON.stringify({ type: "closed", reason: "not started" }));
    setTimeout(() => {
      ws.send(JSON.stringify({ type: "page", url: "http://127.0.0.1:8000/", title: "Directory listing for /" }));
      ws.send(JSON.stringify({ type: "frame", format: "jpeg", data: jpeg, width: 320, height: 200, url: "http://127.0.0.1:8000/" }));
    }, 300);
  });
  await viewer.goto(`${url}/s/${session}#browser`);
  await viewer.locator(".browser-body[data-state='not-started'], .browser-body[data-state='live']").first().waitFor();
  await viewer.locator(".browser-body[data-state='live'] img#browser-frame").waitFor();
  await viewer.locator("#browser-url", { hasText: "http://127.0.0.1:8000/" }).waitFor();
  const size = await viewer.locator("#browser-frame").evaluate((img) => [img.naturalWidth, img.naturalHeight]);
  if (size[0] !== 320 || size[1] !== 200) throw new Error(`the frame shows at ${size}`);
  await viewer.screenshot({ path: join(shots, `${String(n).padStart(2, "0")}-browser-live-view-frame.png`) });
  await viewer.close();
  if (acks !== 0) throw new Error("the page sent messages on the live view socket");
});

await step("share", async () => {
  await page.keyboard.press("Alt+2");
  await page.locator("#preview-share").click();
  await page.locator("#share-make").click();
  const link = await page.locator("#share-url").inputValue();
  if (!link.includes("/__firepit/share?token=")) throw new Error(`share link ${link}`);
  const fresh = await browser.newContext({ viewport: { width: 1000, height: 600 } });
  const other = await fresh.newPage();
  await other.goto(link);
  await other.getByText("Directory listing for /").waitFor({ timeout: T });
  await other.screenshot({ path: join(shots, `${String(n).padStart(2, "0")}-share-fresh-context.png`) });
  // The fresh context has no firepit cookie: the API stays closed to it
  // (asked with the context's cookies, not from the page, whose failed
  // cross-origin fetch the preview's script would report as a problem).
  const status = await fresh.request.get(`${url}/v1/sessions`).then((r) => r.status(), () => 0);
  if (status === 200) throw new Error("a share link opened the API");
  await fresh.close();
});

await step("reload-mid-run", async () => {
  await page.locator("#chat-input").fill("wait for the go file");
  await page.locator("#chat-input").press("Enter");
  // The tool waits for /tmp/go, so the run is surely still going on.
  await page.locator("details.tool[data-tool-id='call_3'].started").waitFor();
  await page.reload();
  await page.locator("#events-status.ok").waitFor();
  await page.locator("details.tool[data-tool-id='call_3']").waitFor();
  await page.locator("#chat-stop:not([hidden])").waitFor(); // still running after the reload
  // A message sent now reaches the running agent at its next step.
  await page.locator("#chat-send", { hasText: "Interject" }).waitFor();
  await page.locator("#chat-input").fill("and mind the tests");
  await page.locator("#chat-input").press("Enter");
  await waitFor("the input to empty", async () => (await page.locator("#chat-input").inputValue()) === "");
  await exec(session, "touch /tmp/go");
  await page.locator(".msg.user", { hasText: "and mind the tests" }).locator(".tag", { hasText: "interjection" }).waitFor();
  await page.locator(".msg.assistant", { hasText: "Released and finished." }).waitFor();
  await page.locator("details.tool[data-tool-id='call_3'].done").waitFor();
  await page.locator("#chat-stop[hidden]").waitFor({ state: "attached" });

  // Nothing lost, nothing twice.
  const count = (sel, text) => page.locator(sel, text ? { hasText: text } : {}).count();
  const want = [
    [".msg.user", "look around please", 1],
    [".msg.user", "wait for the go file", 1],
    [".msg.user", "and mind the tests", 1],
    [".msg.user", null, 3],
    [".msg.assistant", "Let me look around.", 1],
    [".msg.assistant", "All done here.", 1],
    [".msg.assistant", "Waiting for the go file.", 1],
    [".msg.assistant", "Released and finished.", 1],
    ["details.tool", null, 2],
    ["details.tool[data-tool-id='call_1']", null, 1],
    ["details.tool[data-tool-id='call_3']", null, 1],
    [".run-end", null, 2],
  ];
  for (const [sel, text, expected] of want) {
    const got = await count(sel, text);
    if (got !== expected) throw new Error(`${sel}${text ? ` "${text}"` : ""}: ${got}, expected ${expected}`);
  }
  // The timeline holds every seq once, from 1 up, with no gaps.
  await page.keyboard.press("Alt+6");
  await page.locator("#tab-timeline[aria-selected=true]").waitFor();
  const events = await timelineIsWhole();
  if (events < 10) throw new Error(`only ${events} events in the timeline`);
});

/** The seqs in the timeline must be 1, 2, 3 … once each. */
async function timelineIsWhole() {
  const seqs = await page.evaluate(() => Array.from(document.querySelectorAll("#timeline tr[data-seq]"), (r) => Number(r.dataset.seq)));
  seqs.forEach((s, i) => {
    if (s !== i + 1) throw new Error(`timeline seqs ${seqs.join(",")}`);
  });
  return seqs.length;
}

async function api(method, path, body) {
  const r = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

await step("network-drop-and-services", async () => {
  const before = await timelineIsWhole();
  dropping = true;
  for (const { ws, server } of eventSockets) {
    ws.close({ code: 1001, reason: "network drop" });
    server.close();
  }
  eventSockets.clear();
  await page.locator("#events-status.bad").waitFor();
  // While the page is cut off, a service starts and logs.
  await api("POST", `/v1/sessions/${session}/services`, {
    name: "ticker",
    command: { shell: "for i in 1 2 3; do echo tick $i; done; echo oops >&2; exec sleep 100000" },
  });
  await waitFor("the service_started event in the log", async () => {
    const events = await api("GET", `/v1/sessions/${session}/events?since=${before}`);
    return events.some((e) => e.type === "service_started" && e.name === "ticker");
  });
  dropping = false;
  await page.locator("#events-status.ok").waitFor();
  await page.locator("#timeline tr[data-type='service_started']", { hasText: "ticker" }).waitFor({ state: "attached" });
  const after = await timelineIsWhole();
  if (after <= before) throw new Error(`the timeline did not grow: ${before} → ${after}`);
  const started = await page.locator("#timeline tr[data-type='service_started']").count();
  if (started !== 1) throw new Error(`${started} service_started rows`);

  await page.keyboard.press("Alt+4");
  await page.locator("#tab-services[aria-selected=true]").waitFor();
  await page.locator(".service-list button.item", { hasText: "ticker" }).click();
  await page.locator("#service-log", { hasText: "tick 3" }).waitFor();
  await page.locator("#service-log .stderr", { hasText: "oops" }).waitFor();
});

/** Waits for a line on standard input (the Rust test answers there). */
const stdinLines = (async function* () {
  let buf = "";
  for await (const chunk of process.stdin) {
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, nl);
      buf = buf.slice(nl + 1);
    }
  }
})();

await step("daemon-restart", async () => {
  const before = await timelineIsWhole();
  const users = await page.locator(".msg.user").count();
  daemonDown = true;
  console.log("restart-daemon");
  const answer = (await stdinLines.next()).value;
  if (answer !== "restarted") throw new Error(`the test answered ${JSON.stringify(answer)}`);
  // A new event after the restart reaches the page, after all the old ones.
  await api("POST", `/v1/sessions/${session}/services`, {
    name: "after-restart",
    command: { shell: "exec sleep 100000" },
  });
  await page.locator("#timeline tr[data-type='service_started']", { hasText: "after-restart" }).waitFor({ state: "attached" });
  const after = await timelineIsWhole();
  if (after <= before) throw new Error(`the timeline did not grow: ${before} → ${after}`);
  const again = await page.locator(".msg.user").count();
  if (again !== users) throw new Error(`${again} user messages after the restart, ${users} before`);
  // The terminal comes back with the shell's scrollback, drawn once.
  await page.keyboard.press("Alt+1");
  await page.locator(".terminal-pane .conn-status.ok").waitFor();
  daemonDown = false;
  await waitFor("the scrollback", async () => (await terminalLines()).some((l) => l.includes("Serving HTTP on")));
  const hi = (await terminalLines()).filter((l) => l === "hi").length;
  if (hi !== 1) throw new Error(`"hi" is on ${hi} lines of the terminal after the restart`);
});

await step("problem-in-chat", async () => {
  // A service that crashes: the closed loop's problem shows in the chat
  // (waking is turned off, so the stand-in model is not called again).
  await api("PUT", `/v1/sessions/${session}/closed-loop`, { wake_agent: false });
  await api("POST", `/v1/sessions/${session}/services`, {
    name: "crasher",
    command: { shell: "python3 -c 'print(1 // 0)'; exec sleep 100000" },
  });
  const problem = page.locator(".msg.problem", { hasText: "ZeroDivisionError" });
  await problem.waitFor();
  await problem.locator("summary").click();
  await problem.locator("pre", { hasText: "Traceback" }).waitFor();
});

await step("files", async () => {
  await exec(session, "printf 'first line\\n' > /root/notes.txt");
  await page.keyboard.press("Alt+5");
  await page.locator("#file-tree [data-path='/root/notes.txt']").click();
  await page.locator("#file-editor .cm-content").waitFor();
  const text = await page.evaluate(() => Array.from(document.querySelectorAll("#file-editor .cm-line"), (l) => l.textContent).join("\n"));
  if (text !== "first line\n") throw new Error(`the editor shows ${JSON.stringify(text)}`);
  await page.locator("#file-editor .cm-content").click();
  await page.keyboard.press("Control+a");
  await page.keyboard.insertText("edited in the browser\n");
  await page.keyboard.press("Control+s");
  await page.locator("#file-status", { hasText: "saved" }).waitFor();
  const r = await fetch(`${url}/v1/sessions/${session}/files?path=/root/notes.txt`, { headers: { authorization: `Bearer ${token}` } });
  const saved = await r.text();
  if (saved !== "edited in the browser\n") throw new Error(`the file holds ${JSON.stringify(saved)}`);
});

await step("stop-and-start", async () => {
  await page.keyboard.press("Alt+1");
  await page.locator(".topbar").getByRole("button", { name: "Stop" }).click();
  await page.locator(".topbar .state.stopped").waitFor();
  await page.locator(".banner", { hasText: "The session is stopped" }).waitFor();
  await page.locator(".terminal-pane .conn-status", { hasText: "session not running" }).waitFor();
  await page.keyboard.press("Alt+5");
  await page.locator("#file-tree", { hasText: "not running" }).waitFor();
  await page.locator(".topbar").getByRole("button", { name: "Start" }).click();
  await page.locator(".topbar .state.running").waitFor();
  await page.locator("#file-tree [data-path='/root/notes.txt']").waitFor(); // files are kept
  await page.keyboard.press("Alt+1");
  await page.locator(".terminal-pane .conn-status.ok").waitFor();
  await page.locator("#terminal").click();
  await page.keyboard.type("echo back again\n");
  await waitFor("`back again` in the terminal", async () => (await terminalLines()).includes("back again"));
  // A server for the list's ports column.
  await api("POST", `/v1/sessions/${session}/services`, { name: "web", command: { shell: "exec python3 -m http.server 8000" } });
});

await step("rewind", async () => {
  // The agent's `exec` in the chat step had a checkpoint made before it;
  // a file written since is gone after "Rewind to here", the service that
  // ran comes back, and the confirmation named the step that is undone.
  await exec(session, "echo later > /root/after-checkpoint");
  const cp = page.locator(".msg.checkpoint").first();
  await cp.locator("button.rewind").waitFor();
  let asked = "";
  page.once("dialog", (d) => {
    asked = d.message();
    d.accept();
  });
  await cp.locator("button.rewind").click();
  await cp.locator(".rewind-status", { hasText: "rewound to" }).waitFor();
  if (!asked.includes("exec") || !asked.includes("lost")) throw new Error(`the confirmation says: ${asked}`);
  const r = await fetch(`${url}/v1/sessions/${session}/files?path=/root/after-checkpoint`, { headers: { authorization: `Bearer ${token}` } });
  if (r.status !== 404) throw new Error(`a file written after the checkpoint is still there (${r.status})`);
  await page.locator("#timeline tr[data-type='restored']").first().waitFor({ state: "attached" });
  await waitFor("the web service to run again", async () =>
    (await api("GET", `/v1/sessions/${session}/services`)).some((s) => s.name === "web" && s.state === "running"),
  );
  // While the machine restarts, the Preview tab's frame may ask the app's
  // port and get the proxy's 409 (not running) or 502 (not listening yet):
  // the restore's own gap, not an error of the page.
  const gap = /status of (409|502) .*\/\/\d+-[a-z0-9]+\.localhost:\d+\//;
  for (let i = consoleErrors.length - 1; i >= 0; i--) if (gap.test(consoleErrors[i])) consoleErrors.splice(i, 1);
});

await step("sessions-list", async () => {
  await page.locator("a.crumb", { hasText: "Sessions" }).click();
  const row = page.locator(`tr.session-row[data-id='${session}']`);
  await row.locator(".state.running").waitFor();
  await row.locator("a.port", { hasText: "8000" }).waitFor();
  await row.getByRole("button", { name: "Stop" }).click();
  await row.locator(".state.stopped").waitFor();
  await row.getByRole("button", { name: "Start" }).click();
  await row.locator(".state.running").waitFor();
  page.once("dialog", (d) => d.accept());
  await row.getByRole("button", { name: "Destroy" }).click();
  await page.getByText("No sessions yet").waitFor();
  const left = await api("GET", "/v1/sessions");
  if (left.length !== 0) throw new Error(`sessions left: ${JSON.stringify(left)}`);
});

// A second daemon, with no model configured: the chat says what to set.
const bare = process.env.FIREPIT_URL_NO_MODEL;
if (bare) {
  const bareToken = need("FIREPIT_TOKEN_NO_MODEL");
  await step("no-model-guidance", async () => {
    const r = await fetch(`${bare}/v1/sessions`, {
      method: "POST",
      headers: { authorization: `Bearer ${bareToken}`, "content-type": "application/json" },
      body: "{}",
    });
    if (!r.ok) throw new Error(`POST /v1/sessions: ${r.status} ${await r.text()}`);
    const { id } = await r.json();
    await page.goto(`${bare}/?token=${encodeURIComponent(bareToken)}`);
    await page.goto(`${bare}/s/${id}`);
    // With no model the chat starts collapsed: its rail opens it.
    await page.locator("#chat-rail").click();
    const guidance = page.locator(".guidance");
    await guidance.locator("strong", { hasText: "No model is configured." }).waitFor();
    if (!(await page.locator("#chat-input").isDisabled())) throw new Error("the chat input takes messages with no model");
    const text = await guidance.textContent();
    if (!text.includes("ANTHROPIC_API_KEY")) throw new Error(`the guidance says: ${text}`);
  });
}

await browser.close();
console.log(`ui e2e: ${n} steps passed, screenshots in ${shots}`);
// Standard input stays open (the test answers there): end here.
process.exit(0);
