"""An MCP client on the official Python SDK (`mcp` from PyPI), driven by
crates/firepit/tests/it/mcp.rs against a real daemon:

    python mcp_client.py http URL TOKEN [BROWSER_IMAGE]
    python mcp_client.py stdio FIREPIT DATA_DIR [BROWSER_IMAGE]

It initializes, lists the tools, makes a session, runs commands, writes and
reads a file (as a tool and as a resource), checks the errors a model gets
for an unknown session, bad arguments and an unknown tool, makes a
checkpoint, forks from it and restores it, and with a
browser image opens a page served in the machine, reads its snapshot and
takes a screenshot; then it destroys the session. Each check that fails
raises; the last line printed is `ok` when all passed.
"""

import base64
import json
import re
import sys

import anyio
import httpx2
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

PAGE = """<!doctype html><title>MCP page</title>
<h1>Hello from the machine</h1>
<button id="b" onclick="document.getElementById('out').textContent='clicked!'">Press me</button>
<p id="out"></p>
"""

notes = []


def text(result):
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def check(cond, what, result=None):
    if not cond:
        extra = f": {text(result) if result is not None else ''}"
        raise AssertionError(f"{what}{extra}")
    print(f"passed: {what}", flush=True)


async def logging_callback(params):
    notes.append(params.data)


async def run(session: ClientSession, browser_image: str | None):
    init = await session.initialize()
    check(init.server_info.name == "firepit", "the server is firepit")

    tools = await session.list_tools()
    names = {t.name for t in tools.tools}
    for n in ["session_create", "session_list", "session_destroy", "checkpoint_create",
              "checkpoint_list", "checkpoint_restore", "session_fork", "exec", "read_file",
              "write_file", "edit_file", "shell", "shell_read", "service_start", "ports",
              "browser_open", "browser_snapshot", "browser_screenshot", "problems"]:
        check(n in names, f"tool {n} is listed")
    check("ask_user" not in names, "ask_user is not offered")
    exec_tool = next(t for t in tools.tools if t.name == "exec")
    check(exec_tool.input_schema["required"][:2] == ["session", "command"], "exec's schema needs session and command")

    r = await session.call_tool("session_create", {})
    check(not r.is_error, "session_create works", r)
    sess, _ = json.JSONDecoder().raw_decode(text(r))
    sid = sess["id"]
    check(sess["state"] == "running", "the new session runs")
    try:
        await steps(session, sid, browser_image)
    finally:
        r = await session.call_tool("session_destroy", {"session": sid})
    check(not r.is_error, "session_destroy works", r)
    r = await session.call_tool("session_list", {})
    check(sid not in text(r), "the destroyed session is gone from session_list", r)
    r = await session.call_tool("exec", {"session": sid, "command": "true"})
    check(r.is_error and "session_list" in text(r), "a destroyed session is an error a model can act on", r)


async def steps(session: ClientSession, sid: str, browser_image: str | None):
    r = await session.call_tool("exec", {"session": sid, "command": "echo out; echo err >&2; exit 3"})
    t = text(r)
    check("exit code 3" in t and "out" in t and "err" in t, "exec returns exit code, stdout and stderr", r)

    r = await session.call_tool("exec", {"session": sid, "command": "seq 1 300000"})
    t = text(r)
    check("cut from the middle of this output" in t and "300000" in t and len(t) < 40000,
          "a long output is bounded with a cut mark", r)

    r = await session.call_tool("write_file", {"session": sid, "path": "/root/note.txt", "content": "hello over mcp\n"})
    check(not r.is_error, "write_file works", r)
    r = await session.call_tool("read_file", {"session": sid, "path": "/root/note.txt"})
    check("hello over mcp" in text(r), "read_file reads it back", r)
    r = await session.call_tool("edit_file", {"session": sid, "path": "/root/note.txt", "old_text": "hello", "new_text": "goodbye"})
    check(not r.is_error, "edit_file works", r)
    res = await session.read_resource(f"firepit://sessions/{sid}/files/root/note.txt")
    check(res.contents[0].text == "goodbye over mcp\n", "the file reads as a resource")

    r = await session.call_tool("exec", {"session": "nosuchsession", "command": "true"})
    check(r.is_error and "session_list" in text(r), "an unknown session is an error that says what to do", r)
    r = await session.call_tool("exec", {"session": sid})
    check(r.is_error and "command" in text(r), "missing arguments are an error that names them", r)
    r = await session.call_tool("exec", {"command": "true"})
    check(r.is_error and "session" in text(r), "a call without a session says to give one", r)
    try:
        await session.call_tool("no_such_tool", {})
        raise AssertionError("an unknown tool was not refused")
    except MCPError as e:
        check("session_create" in str(e), "an unknown tool is a protocol error listing the tools")
    r = await session.call_tool("exec", {"session": sid, "command": "echo still here"})
    check("still here" in text(r), "the server goes on after bad requests", r)

    r = await session.call_tool("shell", {"session": sid, "command": "echo from-the-shell"})
    check("from-the-shell" in text(r), "shell types into main and reads its output", r)

    await checkpoints(session, sid)

    if browser_image:
        await browser(session, browser_image)


async def checkpoints(session: ClientSession, sid: str):
    r = await session.call_tool("write_file", {"session": sid, "path": "/root/kept.txt", "content": "first\n"})
    check(not r.is_error, "a file to keep is written", r)
    r = await session.call_tool("checkpoint_create", {"session": sid, "name": "first state"})
    m = re.search(r"checkpoint (cp-[0-9a-z]+) made", text(r))
    check(not r.is_error and m is not None, "checkpoint_create makes a checkpoint", r)
    cp = m.group(1)
    r = await session.call_tool("write_file", {"session": sid, "path": "/root/kept.txt", "content": "second\n"})
    check(not r.is_error, "the file is changed after the checkpoint", r)
    r = await session.call_tool("checkpoint_list", {"session": sid})
    check(cp in text(r) and "first state" in text(r), "checkpoint_list lists it with its name", r)

    r = await session.call_tool("session_fork", {"session": sid, "from": cp})
    check(not r.is_error, "session_fork makes a session from the checkpoint", r)
    child = json.JSONDecoder().raw_decode(text(r))[0]["id"]
    try:
        check(child != sid, "the fork is another session")
        r = await session.call_tool("read_file", {"session": child, "path": "/root/kept.txt"})
        check("first" in text(r) and "second" not in text(r), "the fork has the checkpoint's files", r)
    finally:
        r = await session.call_tool("session_destroy", {"session": child})
        check(not r.is_error, "the fork is destroyed", r)
    r = await session.call_tool("read_file", {"session": sid, "path": "/root/kept.txt"})
    check("second" in text(r), "the original is left as it was", r)

    r = await session.call_tool("checkpoint_restore", {"session": sid, "checkpoint": cp})
    check(not r.is_error, "checkpoint_restore returns to the checkpoint", r)
    r = await session.call_tool("read_file", {"session": sid, "path": "/root/kept.txt"})
    check("first" in text(r) and "second" not in text(r), "the files are the checkpoint's again", r)
    r = await session.call_tool("exec", {"session": sid, "command": "echo after-restore"})
    check("after-restore" in text(r), "commands run after the restore", r)

    r = await session.call_tool("checkpoint_restore", {"session": sid, "checkpoint": "cp-nosuchone"})
    check(r.is_error and "checkpoint_list" in text(r), "an unknown checkpoint is an error that says what to do", r)
    r = await session.call_tool("checkpoint_restore", {"session": sid, "checkpoint": "../x"})
    check(r.is_error, "a malformed checkpoint id is refused", r)


async def browser(session: ClientSession, image: str):
    r = await session.call_tool("session_create", {"image": image, "memory_mb": 2048})
    check(not r.is_error, "a browser session is made", r)
    sid = json.JSONDecoder().raw_decode(text(r))[0]["id"]
    try:
        r = await session.call_tool("write_file", {"session": sid, "path": "/root/site/index.html", "content": PAGE})
        check(not r.is_error, "the page is written", r)
        r = await session.call_tool("service_start", {"session": sid, "name": "site",
                                                      "command": "python3 -m http.server 8000 --bind 127.0.0.1",
                                                      "cwd": "/root/site"})
        check(not r.is_error, "the site is served", r)
        r = await session.call_tool("browser_open", {"session": sid, "url": "http://localhost:8000/"})
        check(not r.is_error and "MCP page" in text(r), "browser_open opens the served page", r)
        r = await session.call_tool("browser_snapshot", {"session": sid})
        t = text(r)
        check("Hello from the machine" in t and "ref=" in t, "the snapshot has the page and refs", r)
        btn = [line for line in t.splitlines() if "Press me" in line]
        check(bool(btn), "the button is in the snapshot", r)
        ref = btn[0].split("ref=")[1].split("]")[0]
        r = await session.call_tool("browser_click", {"session": sid, "ref": ref})
        check(not r.is_error, "browser_click clicks it", r)
        r = await session.call_tool("browser_snapshot", {"session": sid})
        check("clicked!" in text(r), "the click changed the page", r)
        r = await session.call_tool("browser_screenshot", {"session": sid})
        images = [c for c in r.content if getattr(c, "type", "") == "image"]
        check(not r.is_error and len(images) == 1 and images[0].mime_type == "image/png",
              "browser_screenshot returns an image", r)
        check(base64.b64decode(images[0].data)[:8] == b"\x89PNG\r\n\x1a\n", "the image is a PNG")
        r = await session.call_tool("ports", {"session": sid})
        check("8000" in text(r), "ports lists the served port with its preview URL", r)
        # The server told this client by itself (a hang guard, not a speed check).
        for _ in range(600):
            if any(isinstance(n, dict) and n.get("event") == "port_opened" and n.get("port") == 8000
                   and n.get("session") == sid for n in notes):
                break
            await anyio.sleep(0.1)
        check(any(isinstance(n, dict) and n.get("event") == "port_opened" for n in notes),
              f"a port_opened notification arrived ({notes})")
    finally:
        await session.call_tool("session_destroy", {"session": sid})


async def main():
    mode = sys.argv[1]
    browser_image = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else None
    if mode == "http":
        url, token = sys.argv[2], sys.argv[3]
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
            async with streamable_http_client(url, http_client=http) as (read, write):
                async with ClientSession(read, write, logging_callback=logging_callback) as session:
                    await run(session, browser_image)
    else:
        firepit, data_dir = sys.argv[2], sys.argv[3]
        params = StdioServerParameters(command=firepit, args=["--data-dir", data_dir, "mcp"])
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write, logging_callback=logging_callback) as session:
                await run(session, browser_image)
    print("ok", flush=True)


anyio.run(main)
