// Drives a firepit daemon through the unmodified `e2b` npm package.
//
// Run by crates/firepit/tests/it/e2b.rs with E2B_API_URL, E2B_SANDBOX_URL and
// E2B_API_KEY pointing at the daemon; E2B_JS is the path of the package's
// ESM entry point. Each step prints its name; a failed check exits non-zero.

import assert from "node:assert/strict";

const { Sandbox, CommandExitError, NotFoundError } = await import(process.env.E2B_JS);

const step = (name) => console.log(`step: ${name}`);

step("create");
const sbx = await Sandbox.create({ metadata: { suite: "e2b-js" }, envs: { GREETING: "hello" }, timeoutMs: 300_000 });
assert.ok(await sbx.isRunning());

step("commands.run with streaming callbacks");
const out = [];
const r = await sbx.commands.run("echo $GREETING; echo oops >&2", { onStdout: (d) => out.push(d) });
assert.equal(r.stdout, "hello\n");
assert.equal(r.stderr, "oops\n");
assert.equal(out.join(""), "hello\n");

step("exit codes");
await assert.rejects(sbx.commands.run("exit 4"), (e) => e instanceof CommandExitError && e.exitCode === 4);

step("background process with stdin");
const h = await sbx.commands.run("cat", { background: true, stdin: true });
await sbx.commands.sendStdin(h.pid, "from js\n");
await sbx.commands.closeStdin(h.pid);
assert.equal((await h.wait()).stdout, "from js\n");

step("files");
await sbx.files.write("/root/js.txt", "written from js");
assert.equal(await sbx.files.read("/root/js.txt"), "written from js");
assert.ok((await sbx.files.list("/root")).some((e) => e.name === "js.txt"));

step("as user: a real account, its files");
const who = await sbx.commands.run("id -un; pwd", { user: "user" });
assert.equal(who.stdout, "user\n/home/user\n");
await sbx.files.write("js-user.txt", "mine", { user: "user" });
const owner = await sbx.commands.run("stat -c %U /home/user/js-user.txt");
assert.equal(owner.stdout, "user\n");

step("lifecycle onTimeout kill");
const doomed = await Sandbox.create({ timeoutMs: 6_000, lifecycle: { onTimeout: "kill" } });
const gone = async () => {
  try {
    await Sandbox.getInfo(doomed.sandboxId);
    return false;
  } catch (e) {
    if (e instanceof NotFoundError) return true;
    throw e;
  }
};
const end = Date.now() + 60_000; // a hang guard, not a speed check
while (!(await gone())) {
  assert.ok(Date.now() < end, "the sandbox was never killed at its timeout");
  await new Promise((r) => setTimeout(r, 100));
}

step("connect and kill");
const again = await Sandbox.connect(sbx.sandboxId);
assert.equal((await again.commands.run("echo again")).stdout, "again\n");
await sbx.kill();
await assert.rejects(Sandbox.connect(sbx.sandboxId), (e) => e instanceof NotFoundError);

console.log("all steps passed");
