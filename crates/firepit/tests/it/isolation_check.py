#!/usr/bin/env python3
"""Isolation checker: runs inside a firepit machine and tries to get out.

Every check tries one way out and reports whether it escaped. The test that
runs this asserts that none did. Arguments: a JSON object with the bait the
test laid on the host (a file path, a host port, another machine's address).
Prints one JSON object: {check_name: {"escaped": bool, "detail": str}}.
"""
import ctypes
import errno
import json
import os
import socket
import sys

bait = json.loads(sys.argv[1])
results = {}
libc = ctypes.CDLL(None, use_errno=True)


def record(name, escaped, detail=""):
    results[name] = {"escaped": bool(escaped), "detail": str(detail)}


def connect(host, port, timeout=1.5):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        return True, "connected"
    except OSError as e:
        return False, repr(e)
    finally:
        s.close()


# Host files: the bait file the test wrote on the host is not here, nor
# through /proc/1/root.
for path in [bait["host_file"], "/proc/1/root" + bait["host_file"]]:
    record("host file " + path, os.path.exists(path), path)
record("host root listing", os.path.exists("/proc/1/root/.firepit-host-only"), "")

# Host processes: only the machine's own are visible; PID 1 is the guest.
pids = [p for p in os.listdir("/proc") if p.isdigit()]
cmdlines = []
for p in pids:
    try:
        with open(f"/proc/{p}/cmdline", "rb") as f:
            cmdlines.append(f.read().replace(b"\0", b" ").decode(errors="replace"))
    except OSError:
        pass
record("host processes", any("firepit" in c and " up" in c for c in cmdlines) or str(bait["host_pid"]) in pids and any(bait["host_marker"] in c for c in cmdlines), cmdlines[:20])
with open("/proc/1/cmdline", "rb") as f:
    init = f.read().split(b"\0")[0].decode()
record("pid 1 is the guest", not init.endswith("guest"), init)

# Host network: the host's listener, through the bridge address and loopback.
for host in [bait["gateway"], "127.0.0.1"]:
    ok, detail = connect(host, bait["host_port"])
    record(f"host service {host}:{bait['host_port']}", ok, detail)
ok, detail = connect(bait["gateway"], bait["daemon_port"])
record("daemon API via the bridge", ok, detail)
ok, detail = connect("127.0.0.1", bait["daemon_port"])
record("daemon API via loopback", ok, detail)
# Link-local / metadata.
ok, detail = connect("169.254.169.254", 80)
record("metadata address", ok, detail)

# Another session.
ok, detail = connect(bait["other_machine"], bait["other_port"])
record("another session", ok, detail)

# Dangerous system calls: each must fail.
SYSCALLS = {
    "kexec_load": (246, [0, 0, 0, 0]),
    "init_module": (175, [0, 0, 0]),
    "finit_module": (313, [-1, 0, 0]),
    "delete_module": (176, [ctypes.c_char_p(b"ext4"), 0]),
    "keyctl": (250, [0, 0, 0, 0, 0]),
    "add_key": (248, [ctypes.c_char_p(b"user"), ctypes.c_char_p(b"k"), 0, 0, -3]),
    "bpf": (321, [0, 0, 0]),
    "perf_event_open": (298, [0, 0, -1, -1, 0]),
    "reboot": (169, [0xfee1dead, 672274793, 0x4321fedc, 0]),
    "swapon": (167, [ctypes.c_char_p(b"/tmp/none"), 0]),
    "acct": (163, [ctypes.c_char_p(b"/tmp/acct")]),
    "settimeofday": (164, [0, 0]),
    "userfaultfd": (323, [0]),
    "open_by_handle_at": (304, [-1, 0, 0]),
}
for name, (nr, args) in SYSCALLS.items():
    ctypes.set_errno(0)
    rc = libc.syscall(nr, *args)
    err = ctypes.get_errno()
    # bpf(BPF_MAP_CREATE) with a NULL attr gives EFAULT only if the call got
    # past the filter; EPERM/ENOSYS mean it was refused.
    escaped = rc >= 0 or err not in (errno.EPERM, errno.ENOSYS, errno.EACCES)
    record(f"syscall {name}", escaped, f"rc={rc} errno={errno.errorcode.get(err, err)}")

# Device nodes.
for dev in ["/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg", "/dev/sda", "/dev/vda", "/dev/nvme0n1"]:
    try:
        fd = os.open(dev, os.O_RDONLY)
        os.close(fd)
        record(f"device {dev}", True, "opened")
    except OSError as e:
        record(f"device {dev}", False, repr(e))
try:
    os.mknod("/tmp/mem", 0o600 | 0o020000, os.makedev(1, 1))
    try:
        fd = os.open("/tmp/mem", os.O_RDONLY)
        os.close(fd)
        record("mknod /dev/mem", True, "made and opened")
    except OSError as e:
        record("mknod /dev/mem", False, "made but not openable: " + repr(e))
except OSError as e:
    record("mknod /dev/mem", False, repr(e))

# Raw sockets.
for fam, typ, proto, name in [
    (socket.AF_PACKET, socket.SOCK_RAW, 0, "packet"),
    (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP, "raw ip"),
]:
    try:
        s = socket.socket(fam, typ, proto)
        s.close()
        record(f"raw socket {name}", True, "created")
    except OSError as e:
        record(f"raw socket {name}", False, repr(e))

# Kernel knobs and cgroups: read-only.
for path in ["/proc/sys/kernel/hostname", "/sys/kernel/mm/transparent_hugepage/enabled", "/proc/sysrq-trigger"]:
    try:
        with open(path, "w") as f:
            f.write("x")
        record(f"write {path}", True, "written")
    except OSError as e:
        record(f"write {path}", False, repr(e))

# Uid ranges: this machine's ids are a range of its own outside, apart from
# the other machine's and from the image's owners; no id outside it can be
# taken or given to a file, so the other machine's files (owned by its range)
# are out of reach even to a process that got out of the mount namespace.
def id_map(path):
    with open(path) as f:
        return [tuple(int(x) for x in line.split()) for line in f if line.strip()]


def meets(a, b, n):
    return a < b + n and b < a + n


n = bait["range"]
for kind in ["uid", "gid"]:
    lines = id_map(f"/proc/self/{kind}_map")
    mine = lines == [(0, bait["own_uid_base"], n)]
    record(f"{kind} map is the machine's own range", not mine, lines)
    shared = [l for l in lines for other in (bait["other_uid_base"], bait["image_uid_base"]) if meets(l[1], other, max(n, l[2]))]
    record(f"{kind} range shared with another machine or the image", shared, shared)
# Last: an id beyond the map (in the host's terms, someone else's range) cannot be
# taken or given.
for name, call in [
    ("chown", lambda: os.chown("/tmp", n, n)),
    ("setresgid", lambda: os.setresgid(n, n, n)),
    ("setresuid", lambda: os.setresuid(n, n, n)),
]:
    try:
        call()
        record(f"id {n} outside the map by {name}", True, "allowed")
    except OSError as e:
        record(f"id {n} outside the map by {name}", e.errno != errno.EINVAL, repr(e))

print(json.dumps(results))
