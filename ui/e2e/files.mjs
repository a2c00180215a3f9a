// End-to-end test of the web UI's Files tab in real headless Chromium
// (Debian's package), driven by playwright-core. Started by
// `crates/firepit/tests/it/ui_files.rs`, which runs a daemon and passes:
//
//   FIREPIT_URL       the daemon's UI origin (http://localhost:<port>)
//   FIREPIT_TOKEN     its API token
//   E2E_DEPS          a dir whose node_modules holds playwright-core
//   E2E_SHOTS         where each step's screenshot goes
//   CHROMIUM          the browser executable (default /usr/bin/chromium)
//   E2E_IMAGE         the session's image (one with git and python3)
//
// Steps: create a file and a folder, edit with Tab (line numbers,
// highlighting, Ctrl+S), rename, upload by the file input and by a drop on
// the tree, a whole folder uploaded by the folder input (its folders kept)
// and by a drop (Chromium's own drag of a directory, an empty folder too),
// names that would leave the folder refused with nothing written, download a file and a folder (tar), delete, a change made in the
// machine appears in the tree, unsaved changes are guarded (opening another
// file, in-page navigation, reload), search opens a file at its line, the
// Changes view shows the diff against the last checkpoint (and, switched,
// against the session's start), a problem's traceback path opens the file
// at its line, and the tab at 1440x900 and 390x844. Each step prints `step <n> <name>: ok`; the first failure prints
// `FAILED <step>: <why>` and exits 1. Every step also checks that the page's
// console has no errors.

import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { url, token, shots, T, launchChromium } from "./harness.mjs";

const image = process.env.E2E_IMAGE || "git";

async function api(method, path, body) {
  const r = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  return r.status === 204 ? null : r.json();
}

/** Runs a shell line in the session through the API (not the UI), for setup and checks. */
async function exec(line) {
  const r = await fetch(`${url}/v1/sessions/${session}/exec`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ command: { shell: line } }),
  });
  const text = await r.text();
  if (!r.ok || !text.includes('"exit"')) throw new Error(`exec ${line}: ${r.status} ${text}`);
  if (!text.includes('"code":0')) throw new Error(`exec ${line} failed: ${text}`);
}

/** A file of the machine, or null when it is not there. */
async function machineFile(path) {
  const r = await fetch(`${url}/v1/sessions/${session}/files?path=${encodeURIComponent(path)}`, { headers: { authorization: `Bearer ${token}` } });
  if (r.status === 404) return null;
  if (!r.ok) throw new Error(`reading ${path}: ${r.status}`);
  return r.text();
}

const browser = await launchChromium();
const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, acceptDownloads: true });
const page = await context.newPage();
page.setDefaultTimeout(T);
const consoleErrors = [];
page.on("console", (m) => {
  if (m.type() === "error") consoleErrors.push(`${m.text()} (${m.location().url ?? ""})`);
});
page.on("pageerror", (e) => consoleErrors.push(`uncaught: ${e.message}`));

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

/** Answers the next dialog (prompt, confirm) with `answer` (true: accept; a string: type it; false: dismiss); resolves to its message. */
function answerDialog(answer) {
  return new Promise((resolve) => {
    page.once("dialog", async (d) => {
      const message = d.message();
      const type = d.type();
      if (answer === false) await d.dismiss();
      else if (typeof answer === "string") await d.accept(answer);
      else await d.accept();
      resolve({ message, type });
    });
  });
}

/** The editor's text, line by line as CodeMirror shows it. */
const editorText = () => page.evaluate(() => Array.from(document.querySelectorAll("#file-editor .cm-line"), (l) => l.textContent).join("\n"));
const item = (path) => page.locator(`#file-tree .tree-item[data-path='${path}']`);
const row = (path) => page.locator(`#file-tree .tree-row:has(> .tree-item[data-path='${path}'])`);

let session = "";

await step("open-files", async () => {
  const s = await api("POST", "/v1/sessions", { image });
  session = s.id;
  // The start's baseline is taken in the background: the files come after it.
  await waitFor("the start's baseline", async () => (await api("GET", `/v1/sessions/${session}/changes?path=/root`)).baseline === "start");
  await exec(
    "mkdir -p /root/proj/src && cd /root/proj && " +
      "printf 'fn main() {\\n    println!(\"Needle here\");\\n}\\n' > src/main.rs && " +
      "printf 'old\\n' > notes.txt && " +
      "printf 'import os\\n\\nraise ValueError(\"broken on purpose\")\\n' > bad.py && " +
      "git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm start",
  );
  // A checkpoint: the Changes view compares with the files just before it.
  await api("POST", `/v1/sessions/${session}/checkpoints`, { name: "setup" });
  await exec("printf 'new\\n' > /root/proj/notes.txt");
  await page.goto(`${url}/?token=${encodeURIComponent(token)}`);
  await page.goto(`${url}/s/${session}#files`);
  await page.locator("#tab-files[aria-selected=true]").waitFor();
  await item("/root/proj").waitFor();
});

await step("create-file-and-folder", async () => {
  let asked = answerDialog("hello.py");
  await page.locator("#file-new").click();
  await asked;
  await page.locator("#file-path", { hasText: "/root/hello.py" }).waitFor();
  await page.locator("#file-editor .cm-content").waitFor();
  await item("/root/hello.py").waitFor();
  if ((await machineFile("/root/hello.py")) !== "") throw new Error("the new file is not there, empty");
  asked = answerDialog("pkg");
  await page.locator("#folder-new").click();
  await asked;
  await item("/root/pkg").waitFor();
  const st = await api("GET", `/v1/sessions/${session}/files/stat?path=/root/pkg`);
  if (st.kind !== "dir") throw new Error(`/root/pkg is a ${st.kind}`);
});

await step("edit-with-tab", async () => {
  await page.locator("#file-editor .cm-content").click();
  await page.keyboard.insertText("def f():\nreturn 1");
  await page.keyboard.press("Home");
  await page.keyboard.press("Tab");
  // Tab indented the line and the editor kept the focus.
  const inEditor = await page.evaluate(() => !!document.activeElement?.closest("#file-editor"));
  if (!inEditor) throw new Error("Tab left the editor");
  const text = await editorText();
  if (text !== "def f():\n    return 1") throw new Error(`the editor holds ${JSON.stringify(text)}`);
  // Line numbers and Python highlighting.
  await page.locator("#file-editor .cm-lineNumbers .cm-gutterElement", { hasText: "2" }).waitFor();
  if ((await page.locator("#file-editor").getAttribute("data-language")) !== "Python") throw new Error("not highlighted as Python");
  await waitFor("highlighted tokens", () => page.evaluate(() => document.querySelectorAll("#file-editor .cm-line span").length > 0));
  await page.locator("#tab-files.dirty").waitFor();
  await page.keyboard.press("Control+s");
  await page.locator("#file-status", { hasText: "saved" }).waitFor();
  if ((await machineFile("/root/hello.py")) !== "def f():\n    return 1") throw new Error("the save did not write what the editor held");
  await page.locator("#tab-files:not(.dirty)").waitFor();
});

await step("rename", async () => {
  const asked = answerDialog("renamed.py");
  await row("/root/hello.py").locator("[data-action=rename]").click();
  await asked;
  await item("/root/renamed.py").waitFor();
  await page.locator("#file-path", { hasText: "/root/renamed.py" }).waitFor();
  if ((await machineFile("/root/hello.py")) !== null) throw new Error("the old name is still there");
  if ((await machineFile("/root/renamed.py")) !== "def f():\n    return 1") throw new Error("the renamed file lost its contents");
});

await step("upload-file-input", async () => {
  await item("/root/pkg").click(); // selects and opens the folder
  await page.locator("#file-tree li[aria-expanded=true] > .tree-row > .tree-item[data-path='/root/pkg']").waitFor();
  await page.locator("#file-upload").setInputFiles({ name: "up.txt", mimeType: "text/plain", buffer: Buffer.from("uploaded\n") });
  await page.locator("#file-status", { hasText: "uploaded 1 file to /root/pkg" }).waitFor();
  await item("/root/pkg/up.txt").waitFor();
  if ((await machineFile("/root/pkg/up.txt")) !== "uploaded\n") throw new Error("the upload did not arrive whole");
});

await step("upload-drag-and-drop", async () => {
  const dt = await page.evaluateHandle(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(["dropped\n"], "drop.txt", { type: "text/plain" }));
    return dt;
  });
  const target = item("/root/pkg");
  await target.dispatchEvent("dragenter", { dataTransfer: dt });
  await target.dispatchEvent("dragover", { dataTransfer: dt });
  await target.dispatchEvent("drop", { dataTransfer: dt });
  await page.locator("#file-status", { hasText: "uploaded 1 file to /root/pkg" }).waitFor();
  await item("/root/pkg/drop.txt").waitFor();
  if ((await machineFile("/root/pkg/drop.txt")) !== "dropped\n") throw new Error("the dropped file did not arrive whole");
});

await step("upload-folder-input", async () => {
  // A folder on disk, picked whole: Playwright hands a directory to a
  // webkitdirectory input as the browser's folder picker would.
  const dir = join(mkdtempSync(join(tmpdir(), "firepit-upload-")), "site");
  mkdirSync(join(dir, "css"), { recursive: true });
  mkdirSync(join(dir, "deep", "er"), { recursive: true });
  writeFileSync(join(dir, "index.html"), "<h1>up</h1>\n");
  writeFileSync(join(dir, "css", "a.css"), "h1 { color: red }\n");
  writeFileSync(join(dir, "deep", "er", "x.txt"), "deep\n");
  await page.locator("#folder-upload-button").waitFor();
  await page.locator("#folder-upload").setInputFiles(dir);
  await page.locator("#file-status", { hasText: "uploaded 3 files to /root/pkg" }).waitFor();
  await item("/root/pkg/site").waitFor();
  const want = { "/root/pkg/site/index.html": "<h1>up</h1>\n", "/root/pkg/site/css/a.css": "h1 { color: red }\n", "/root/pkg/site/deep/er/x.txt": "deep\n" };
  for (const [path, text] of Object.entries(want)) {
    const got = await machineFile(path);
    if (got !== text) throw new Error(`${path} holds ${JSON.stringify(got)}, not ${JSON.stringify(text)}`);
  }
});

await step("upload-folder-drop", async () => {
  // A folder dropped from the desktop: Chromium's own drag (DevTools'
  // Input.dispatchDragEvent with a directory's path) gives the page a real
  // directory entry, which the tree walks, an empty folder included.
  const dir = join(mkdtempSync(join(tmpdir(), "firepit-drop-")), "dropped");
  mkdirSync(join(dir, "sub", "empty"), { recursive: true });
  writeFileSync(join(dir, "a.txt"), "a\n");
  writeFileSync(join(dir, "sub", "b.txt"), "b\n");
  const box = await item("/root/pkg").boundingBox();
  const cdp = await context.newCDPSession(page);
  const data = { items: [], files: [dir], dragOperationsMask: 1 };
  for (const type of ["dragEnter", "dragOver", "drop"]) {
    await cdp.send("Input.dispatchDragEvent", { type, x: box.x + box.width / 2, y: box.y + box.height / 2, data });
  }
  await cdp.detach();
  await page.locator("#file-status", { hasText: "uploaded 2 files and 3 folders to /root/pkg" }).waitFor();
  await item("/root/pkg/dropped").waitFor();
  for (const [path, text] of Object.entries({ "/root/pkg/dropped/a.txt": "a\n", "/root/pkg/dropped/sub/b.txt": "b\n" })) {
    const got = await machineFile(path);
    if (got !== text) throw new Error(`${path} holds ${JSON.stringify(got)}, not ${JSON.stringify(text)}`);
  }
  const empty = await api("GET", `/v1/sessions/${session}/files/stat?path=${encodeURIComponent("/root/pkg/dropped/sub/empty")}`);
  if (empty.kind !== "dir") throw new Error(`the empty folder came as ${JSON.stringify(empty)}`);
});

await step("upload-bad-names-refused", async () => {
  // A drop whose names would leave the folder: the whole drop is refused,
  // its good file too, and the error names the bad ones.
  const dt = await page.evaluateHandle(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(["fine\n"], "fine.txt", { type: "text/plain" }));
    dt.items.add(new File(["bad\n"], "..", { type: "text/plain" }));
    return dt;
  });
  const target = item("/root/pkg");
  await target.dispatchEvent("dragenter", { dataTransfer: dt });
  await target.dispatchEvent("dragover", { dataTransfer: dt });
  await target.dispatchEvent("drop", { dataTransfer: dt });
  const status = page.locator("#file-status", { hasText: "nothing uploaded" });
  await status.waitFor();
  const text = await status.textContent();
  if (!text.includes('".."')) throw new Error(`the error does not name the bad file: ${text}`);
  if ((await machineFile("/root/pkg/fine.txt")) !== null) throw new Error("a refused drop wrote its good file");
  // The same through the file input.
  await page.locator("#file-upload").setInputFiles([
    { name: "fine.txt", mimeType: "text/plain", buffer: Buffer.from("fine\n") },
    { name: "..", mimeType: "text/plain", buffer: Buffer.from("bad\n") },
  ]);
  await page.locator("#file-status", { hasText: "nothing uploaded" }).waitFor();
  if ((await machineFile("/root/pkg/fine.txt")) !== null) throw new Error("a refused upload wrote its good file");
});

await step("download", async () => {
  let wait = page.waitForEvent("download");
  await row("/root/renamed.py").locator("[data-action=download]").click();
  let dl = await wait;
  if (dl.suggestedFilename() !== "renamed.py") throw new Error(`the file downloads as ${dl.suggestedFilename()}`);
  const got = readFileSync(await dl.path(), "utf8");
  if (got !== "def f():\n    return 1") throw new Error(`the download holds ${JSON.stringify(got)}`);
  wait = page.waitForEvent("download");
  await row("/root/pkg").locator("[data-action=download]").click();
  dl = await wait;
  if (dl.suggestedFilename() !== "pkg.tar") throw new Error(`the folder downloads as ${dl.suggestedFilename()}`);
  const tarPath = join(shots, "pkg.tar");
  await dl.saveAs(tarPath);
  const names = execFileSync("tar", ["-tf", tarPath], { encoding: "utf8" });
  for (const want of ["./pkg/up.txt", "./pkg/drop.txt"]) if (!names.includes(want)) throw new Error(`the archive lacks ${want}: ${names}`);
});

await step("delete", async () => {
  const asked = answerDialog(true);
  await row("/root/renamed.py").locator("[data-action=delete]").click();
  const { message } = await asked;
  if (!message.includes("/root/renamed.py")) throw new Error(`the confirmation says: ${message}`);
  await item("/root/renamed.py").waitFor({ state: "detached" });
  if ((await machineFile("/root/renamed.py")) !== null) throw new Error("the file is still there");
});

await step("external-change", async () => {
  // Made in the machine, not through the UI: the tree follows without a refresh.
  await exec("echo from-the-shell > /root/external.txt && echo more > /root/pkg/ext2.txt");
  await item("/root/external.txt").waitFor();
  await item("/root/pkg/ext2.txt").waitFor();
  await exec("rm /root/pkg/ext2.txt");
  await item("/root/pkg/ext2.txt").waitFor({ state: "detached" });
});

await step("unsaved-guard", async () => {
  await item("/root/external.txt").click();
  await page.locator("#file-path", { hasText: "/root/external.txt" }).waitFor();
  await page.locator("#file-editor .cm-content").click();
  await page.keyboard.press("Control+End");
  await page.keyboard.insertText("unsaved words");
  await page.locator("#tab-files.dirty").waitFor();
  // Opening another file asks; staying keeps the edit.
  let asked = answerDialog(false);
  await item("/root/pkg/up.txt").click();
  let d = await asked;
  if (!d.message.includes("Discard the changes to /root/external.txt")) throw new Error(`opening another file asked: ${d.message}`);
  if (!(await editorText()).includes("unsaved words")) throw new Error("the edit was lost");
  // Navigating inside the page asks; staying keeps the page.
  asked = answerDialog(false);
  await page.locator("a.crumb", { hasText: "Sessions" }).click();
  d = await asked;
  if (!d.message.includes("unsaved changes")) throw new Error(`leaving asked: ${d.message}`);
  if (!page.url().includes(`/s/${session}`)) throw new Error(`left for ${page.url()}`);
  // Reloading asks the browser's own question.
  asked = answerDialog(false);
  await page.evaluate(() => setTimeout(() => location.reload(), 0));
  d = await asked;
  if (d.type !== "beforeunload") throw new Error(`a reload asked a ${d.type}`);
  if (!(await editorText()).includes("unsaved words")) throw new Error("the reload went ahead");
  // Saved, nothing is asked any more.
  await page.locator("#file-editor .cm-content").click();
  await page.keyboard.press("Control+s");
  await page.locator("#file-status", { hasText: "saved" }).waitFor();
  if (!(await machineFile("/root/external.txt")).includes("unsaved words")) throw new Error("the save did not arrive");
});

await step("search", async () => {
  await page.locator("#files-mode-search").click();
  await page.locator("#file-search").fill("needle");
  await page.locator("#file-search").press("Enter");
  const hit = page.locator("#file-search-results .search-hit[data-path='/root/proj/src/main.rs'][data-line='2']");
  await hit.waitFor();
  await page.locator("#file-search-summary").waitFor();
  await hit.click();
  await page.locator("#file-path", { hasText: "/root/proj/src/main.rs" }).waitFor();
  await page.locator("#file-editor .cm-activeLine", { hasText: "Needle here" }).waitFor();
});

await step("changes", async () => {
  await page.locator("#file-root").fill("/root/proj");
  await page.locator("#file-root").press("Enter");
  await page.locator("#files-mode-changes").click();
  const change = page.locator("#changes-view details.change[data-path='/root/proj/notes.txt']");
  await change.waitFor();
  await change.locator(".diff-line.del", { hasText: "-old" }).waitFor();
  await change.locator(".diff-line.add", { hasText: "+new" }).waitFor();
  await page.locator("#changes-list .changes-head[data-baseline=checkpoint]", { hasText: "since checkpoint setup" }).waitFor();
  await page.screenshot({ path: join(shots, `${String(n).padStart(2, "0")}-changes-diff.png`) });
  // Since the start: what came before the checkpoint shows too, and the
  // browser remembers the pick.
  const before = page.locator("#changes-view details.change[data-path='/root/proj/src/main.rs']");
  if (await before.count()) throw new Error("a change from before the checkpoint shows since the checkpoint");
  await page.locator("#changes-since-checkpoint[aria-pressed=true]").waitFor();
  await page.locator("#changes-since-start").click();
  await page.locator("#changes-list .changes-head[data-baseline=start]", { hasText: "since the session's start" }).waitFor();
  await page.locator("#changes-since-start[aria-pressed=true]").waitFor();
  await before.locator(".diff-line.add", { hasText: "Needle here" }).waitFor();
  await change.locator(".diff-line.add", { hasText: "+new" }).waitFor();
  const kept = await page.evaluate(() => localStorage.getItem("firepit.changes.since"));
  if (kept !== "start") throw new Error(`the pick was remembered as ${kept}`);
  await page.screenshot({ path: join(shots, `${String(n).padStart(2, "0")}-changes-since-start.png`) });
  await page.locator("#changes-since-checkpoint").click();
  await page.locator("#changes-list .changes-head[data-baseline=checkpoint]").waitFor();
  await before.waitFor({ state: "detached" });
  await change.getByRole("button", { name: "Open" }).click();
  await page.locator("#file-path", { hasText: "/root/proj/notes.txt" }).waitFor();
  // The file's text loads after its path shows.
  await waitFor("the changed file's text in the editor", async () => (await editorText()) === "new\n");
});

await step("problem-link", async () => {
  await api("POST", `/v1/sessions/${session}/services`, { name: "bad", command: { shell: "exec python3 /root/proj/bad.py" } });
  // With no model configured the chat starts collapsed: open it to see the card.
  const rail = page.locator("#chat-rail");
  if (await rail.isVisible()) await rail.click();
  const card = page.locator(".msg.problem", { hasText: "ValueError" }).first();
  await card.waitFor();
  if (!(await card.evaluate((el) => el.open))) await card.locator("summary").click();
  const link = card.locator("a.file-link[data-path='/root/proj/bad.py'][data-line='3']").first();
  await link.click();
  await page.locator("#tab-files[aria-selected=true]").waitFor();
  await page.locator("#file-path", { hasText: "/root/proj/bad.py" }).waitFor();
  await page.locator("#file-editor .cm-activeLine", { hasText: "broken on purpose" }).waitFor();
  await api("DELETE", `/v1/sessions/${session}/services/bad`);
});

await step("wide-1440x900", async () => {
  await page.setViewportSize({ width: 1440, height: 900 });
  await page.locator("#files-mode-tree").click();
  await page.locator("#file-editor .cm-content").waitFor();
});

await step("narrow-390x844", async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.locator("#file-tree").waitFor();
  // Nothing of the tab is wider than the screen.
  const wide = await page.evaluate(() => document.querySelector(".files-pane").scrollWidth);
  if (wide > 390) throw new Error(`the Files tab is ${wide} px wide at 390 px`);
});

writeFileSync(join(shots, "done"), String(n));
await api("DELETE", `/v1/sessions/${session}`);
await browser.close();
console.log(`files e2e: ${n} steps passed, screenshots in ${shots}`);
process.exit(0);

async function waitFor(what, f) {
  const deadline = Date.now() + T;
  while (Date.now() < deadline) {
    if (await f()) return;
    await page.waitForTimeout(100);
  }
  throw new Error(`gave up waiting for ${what}`);
}
