"""Drives a firepit daemon through the unmodified `e2b` Python SDK.

Run by crates/firepit/tests/it/e2b.rs with E2B_API_URL, E2B_SANDBOX_URL and
E2B_API_KEY pointing at the daemon; FIREPIT_URL and FIREPIT_TOKEN are the
daemon's base URL and token (the preview is fetched with the token).
Each step prints its name; any failed assertion fails the test.
"""

import os
import sys
import time
import urllib.request
import uuid

import e2b
import asyncio

from e2b import AsyncSandbox, Sandbox, CommandExitException, NotFoundException, AuthenticationException, TimeoutException
from e2b.sandbox.commands.command_handle import PtySize

# A hang guard for waits on the machine, not a speed budget.
GUARD = 60.0
RUN = uuid.uuid4().hex[:8]


def step(name):
    print(f"step: {name}", flush=True)


def wait_for(what, cond):
    end = time.monotonic() + GUARD
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


step("create")
# Paused, not killed, at its timeout (the set_timeout step below); older
# SDKs send "kill" (E2B's default) unless told.
sbx = Sandbox.create(metadata={"suite": "e2b", "run": RUN}, envs={"GREETING": "hello"}, timeout=300,
                     lifecycle={"on_timeout": "pause"})
assert sbx.sandbox_id
assert sbx.is_running()

step("commands.run with streaming callbacks")
out, err = [], []
r = sbx.commands.run("echo hi; echo oops >&2", on_stdout=out.append, on_stderr=err.append)
assert r.exit_code == 0, r
assert r.stdout == "hi\n", repr(r.stdout)
assert r.stderr == "oops\n", repr(r.stderr)
assert "".join(out) == "hi\n" and "".join(err) == "oops\n", (out, err)

step("envs from create and from the call, cwd")
r = sbx.commands.run("echo $GREETING $OTHER; pwd", envs={"OTHER": "there"}, cwd="/tmp")
assert r.stdout == "hello there\n/tmp\n", repr(r.stdout)

step("exit codes and CommandExitException")
try:
    sbx.commands.run("echo before; exit 3")
    raise AssertionError("no CommandExitException")
except CommandExitException as e:
    assert e.exit_code == 3, e.exit_code
    assert e.stdout == "before\n", repr(e.stdout)

step("background process with stdin")
h = sbx.commands.run("cat", background=True, stdin=True)
sbx.commands.send_stdin(h.pid, "abc\n")
sbx.commands.send_stdin(h.pid, b"def\n")
sbx.commands.close_stdin(h.pid)
r = h.wait()
assert r.stdout == "abc\ndef\n", repr(r.stdout)

step("list, connect and kill a running process")
h = sbx.commands.run("sleep 1000", background=True)
assert h.pid in [p.pid for p in sbx.commands.list()]
late = sbx.commands.run("sleep 0.3; echo late", background=True)
again = sbx.commands.connect(late.pid)
assert again.wait().stdout.endswith("late\n")
assert sbx.commands.kill(h.pid)
try:
    h.wait()
    raise AssertionError("a killed process exited 0")
except CommandExitException as e:
    assert e.exit_code != 0
assert h.pid not in [p.pid for p in sbx.commands.list()]
assert not sbx.commands.kill(h.pid)

step("files: write, read, list, stat, exists, make_dir, rename, remove")
info = sbx.files.write("/tmp/e2b/a.txt", "content")
assert info.path == "/tmp/e2b/a.txt", info
assert sbx.files.read("/tmp/e2b/a.txt") == "content"
sbx.files.write("/tmp/e2b/b.bin", b"\x00\x01\xff")
assert bytes(sbx.files.read("/tmp/e2b/b.bin", format="bytes")) == b"\x00\x01\xff"
big = os.urandom(3 << 20)
sbx.files.write("/tmp/e2b/big.bin", big)
assert bytes(sbx.files.read("/tmp/e2b/big.bin", format="bytes")) == big
from e2b.sandbox.filesystem.filesystem import WriteEntry
sbx.files.write_files([WriteEntry(path="/tmp/e2b/m1", data="one"), WriteEntry(path="/tmp/e2b/m2", data="two")])
assert sbx.files.read("/tmp/e2b/m2") == "two"
names = sorted(e.name for e in sbx.files.list("/tmp/e2b"))
assert names == ["a.txt", "b.bin", "big.bin", "m1", "m2"], names
assert sbx.files.exists("/tmp/e2b/a.txt")
assert not sbx.files.exists("/tmp/e2b/nope")
assert sbx.files.make_dir("/tmp/e2b/d/e")
assert not sbx.files.make_dir("/tmp/e2b/d/e")
deep = sorted(e.path for e in sbx.files.list("/tmp/e2b", depth=3) if e.type.value == "dir")
assert deep == ["/tmp/e2b/d", "/tmp/e2b/d/e"], deep
sbx.files.rename("/tmp/e2b/a.txt", "/tmp/e2b/d/a.txt")
st = sbx.files.get_info("/tmp/e2b/d/a.txt")
assert st.size == 7 and st.name == "a.txt", st
sbx.files.remove("/tmp/e2b/d")
assert not sbx.files.exists("/tmp/e2b/d")
try:
    sbx.files.read("/tmp/e2b/none")
    raise AssertionError("reading a missing file worked")
except NotFoundException:
    pass

step("files: watch a directory")
sbx.files.make_dir("/tmp/w")
w = sbx.files.watch_dir("/tmp/w")
sbx.files.write("/tmp/w/new.txt", "x")
events = wait_for("the watch's event", lambda: w.get_new_events())
assert any(ev.name == "new.txt" and ev.type.value == "create" for ev in events), events
w.stop()

step("files: a streamed watch (WatchDir)")


async def streamed_watch():
    asbx = await AsyncSandbox.connect(sbx.sandbox_id)
    seen = asyncio.Event()
    names = []

    def on_event(ev):
        names.append((ev.name, ev.type.value))
        if ev.name == "streamed.txt":
            seen.set()

    handle = await asbx.files.watch_dir("/tmp/w", on_event, timeout=0)
    await asbx.files.write("/tmp/w/streamed.txt", "y")
    await asyncio.wait_for(seen.wait(), GUARD)
    await handle.stop()
    assert ("streamed.txt", "create") in names, names


asyncio.run(streamed_watch())

step("a command past its timeout raises TimeoutException")
try:
    sbx.commands.run("sleep 30", timeout=1)
    raise AssertionError("no TimeoutException")
except TimeoutException:
    pass

step("a pty: input, resize, output")
chunks = []
t = sbx.pty.create(PtySize(rows=24, cols=80))
sbx.pty.resize(t.pid, PtySize(rows=30, cols=100))
sbx.pty.send_stdin(t.pid, b"stty size; echo pty-$((40+2))\nexit\n")
t.wait(on_pty=lambda b: chunks.append(bytes(b)))
text = b"".join(chunks).decode(errors="replace")
assert "pty-42" in text, text
assert "30 100" in text, text

step("the user argument: user is a real account, root the default")
r = sbx.commands.run("id -un; id -u; echo $HOME; pwd", user="user")
name, uid, home, cwd = r.stdout.split()
assert name == "user" and uid != "0" and home == cwd == "/home/user", r.stdout
assert sbx.commands.run("id -un", user="root").stdout == "root\n"
assert sbx.commands.run("id -un").stdout == "root\n"
try:
    sbx.commands.run("touch /root/not-yours", user="user")
    raise AssertionError("user could write in /root")
except CommandExitException as e:
    assert "Permission denied" in e.stderr, e.stderr

step("files written as user are user's")
sbx.files.write("/tmp/u/v/owned.txt", "mine", user="user")
r = sbx.commands.run("stat -c %U /tmp/u/v/owned.txt /tmp/u/v /tmp/u; stat -c %U /tmp")
assert r.stdout == "user\nuser\nuser\nroot\n", r.stdout
sbx.files.write("rel.txt", "at home", user="user")
assert sbx.files.read("/home/user/rel.txt") == "at home"
assert sbx.commands.run("cat rel.txt", user="user").stdout == "at home"
assert sbx.files.read("rel.txt", user="user") == "at home"
assert sbx.files.make_dir("/tmp/u/made", user="user")
assert sbx.commands.run("stat -c %U /tmp/u/made").stdout == "user\n"
assert sbx.commands.run("echo ok > /tmp/u/made/f", user="user").exit_code == 0
try:
    sbx.commands.run("id", user="nobody-here")
    raise AssertionError("an unknown user was taken")
except Exception as e:
    assert "root and user" in str(e), e

step("a pty as user")
chunks = []
t = sbx.pty.create(PtySize(rows=24, cols=80), user="user")
sbx.pty.send_stdin(t.pid, b"echo who-$(id -un)\nexit\n")
t.wait(on_pty=lambda b: chunks.append(bytes(b)))
text = b"".join(chunks).decode(errors="replace")
assert "who-user" in text, text

step("get_host answered through the preview proxy")
sbx.commands.run("cd /tmp && exec python3 -m http.server 8000 >/dev/null 2>&1", background=True)
host = sbx.get_host(8000)
assert host.startswith(f"8000-{sbx.sandbox_id}."), host
base = os.environ["FIREPIT_URL"]


def fetch():
    req = urllib.request.Request(base + "/w/", headers={"Host": host, "Authorization": "Bearer " + os.environ["FIREPIT_TOKEN"]})
    sbx.files.write("/tmp/w/index.html", "served")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status == 200 and resp.read() == b"served"
    except Exception:
        return False


wait_for("the preview", fetch)

step("list by metadata and state")
found = Sandbox.list(query=e2b.SandboxQuery(metadata={"run": RUN})).next_items()
assert [s.sandbox_id for s in found] == [sbx.sandbox_id], found
assert found[0].metadata.get("suite") == "e2b"
none = Sandbox.list(query=e2b.SandboxQuery(metadata={"run": "other"})).next_items()
assert none == [], none

step("Sandbox.connect")
same = Sandbox.connect(sbx.sandbox_id)
assert same.commands.run("echo again").stdout == "again\n"

step("errors: not found, authentication")
try:
    Sandbox.connect("nosuchsandbox")
    raise AssertionError("connecting to nothing worked")
except NotFoundException:
    pass
try:
    Sandbox.list(api_key="wrong").next_items()
    raise AssertionError("a wrong key was taken")
except AuthenticationException:
    pass

step("set_timeout, then the sandbox stops")
sbx.files.write("kept.txt", "kept")
sbx.set_timeout(1)
wait_for("the sandbox to stop", lambda: not sbx.is_running())
info = Sandbox.get_info(sbx.sandbox_id)
assert info.state.value == "paused", info.state

step("connect resumes it")
back = Sandbox.connect(sbx.sandbox_id, timeout=300)
assert back.is_running()
assert back.files.read("/root/kept.txt") == "kept"

step("lifecycle on_timeout kill: the timeout destroys the sandbox")
doomed = Sandbox.create(timeout=6, lifecycle={"on_timeout": "kill"}, metadata={"run": RUN, "kind": "kill"})
try:
    lifecycle = getattr(Sandbox.get_info(doomed.sandbox_id), "lifecycle", None)
    assert lifecycle is None or lifecycle["on_timeout"] == "kill", lifecycle
except NotFoundException:
    pass  # already killed


def doomed_gone():
    try:
        Sandbox.get_info(doomed.sandbox_id)
        return False
    except NotFoundException:
        return True


wait_for("the sandbox to be killed at its timeout", doomed_gone)

step("kill")
back.kill()
try:
    Sandbox.connect(sbx.sandbox_id)
    raise AssertionError("a killed sandbox could be connected to")
except NotFoundException:
    pass

print("all steps passed", flush=True)
