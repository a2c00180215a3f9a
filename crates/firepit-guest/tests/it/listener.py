# Listens on each address given (port 0), writes `pid N` and `ADDR PORT` lines
# to the file named first (whole, by a rename), then sleeps until killed. With
# `--daemon` first it leaves its parent behind first: fork, setsid, fork again.
# Used by the guest's port tests and by the firepit crate's, inside machines.
import os, socket, sys, time
out, addrs = sys.argv[1], sys.argv[2:]
if addrs[:1] == ["--daemon"]:
    addrs = addrs[1:]
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
socks = []
for a in addrs:
    fam = socket.AF_INET6 if ":" in a else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((a, 0))
    s.listen()
    socks.append(s)
with open(out + ".tmp", "w") as f:
    f.write("pid %d\n" % os.getpid())
    for a, s in zip(addrs, socks):
        f.write("%s %d\n" % (a, s.getsockname()[1]))
os.rename(out + ".tmp", out)
while True:
    time.sleep(3600)
