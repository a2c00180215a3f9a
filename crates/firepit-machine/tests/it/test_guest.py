#!/usr/bin/python3
# A stand-in guest for the tests: PID 1 that runs one shell command per
# connection on its socket and answers "<exit status>\n<output>".
import os, signal, socket, subprocess, sys, threading

signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
if "--listen-fd" in sys.argv:
    # The launcher's socket, listening already; not for our children.
    srv = socket.socket(fileno=int(sys.argv[sys.argv.index("--listen-fd") + 1]))
    srv.set_inheritable(False)
else:
    path = sys.argv[sys.argv.index("--socket") + 1]
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path + ".tmp")
    os.rename(path + ".tmp", path)
srv.listen(64)

def reset_oom():
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("0")

def serve(conn):
    data = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    try:
        p = subprocess.run(["/bin/sh", "-c", data.decode()], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, preexec_fn=reset_oom, timeout=60)
        code, out = p.returncode, p.stdout
    except Exception as e:
        code, out = 255, str(e).encode()
    conn.sendall(b"%d\n" % code + out)
    conn.close()

while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
