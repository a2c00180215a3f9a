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


def guest_is_untouchable():
    """PID 1 (the guest) holds the daemon's connection and its listening
    socket: nothing here may trace it, read its memory or take its fds."""
    for name, request in [("PTRACE_ATTACH", 16), ("PTRACE_SEIZE", 0x4206)]:
        ctypes.set_errno(0)
        rc = libc.ptrace(request, 1, 0, 0)
        err = ctypes.get_errno()
        if rc == 0:
            libc.ptrace(17, 1, 0, 0)  # PTRACE_DETACH
        record(f"ptrace pid 1 ({name})", rc == 0, f"rc={rc} errno={errno.errorcode.get(err, err)}")
    for path in ["/proc/1/mem", "/proc/1/environ"]:
        try:
            with open(path, "rb") as f:
                record(f"read {path}", True, f.read(16))
        except OSError as e:
            record(f"read {path}", False, repr(e))
    # Its descriptors' numbers may show; what they are, or opening them
    # through /proc, may not.
    reached = []
    for fd in os.listdir("/proc/1/fd"):
        path = f"/proc/1/fd/{fd}"
        try:
            reached.append((path, os.readlink(path)))
        except OSError:
            pass
        try:
            os.close(os.open(path, os.O_RDONLY))
            reached.append((path, "opened"))
        except OSError:
            pass
    record("pid 1's descriptors through /proc", bool(reached), reached)
    # pidfd_open(434) / pidfd_getfd(438): the guest's descriptors.
    pidfd = libc.syscall(434, 1, 0)
    got = []
    if pidfd >= 0:
        for fd in range(0, 64):
            new = libc.syscall(438, pidfd, fd, 0)
            if new >= 0:
                got.append(fd)
                os.close(new)
        os.close(pidfd)
    record("pidfd_getfd of pid 1", bool(got), f"descriptors taken: {got}")


def guest_socket_out_of_reach():
    """The daemon dials a socket in a root-only host dir that is not in this
    machine; nothing of it may be here to replace or link."""
    present = [p for p in ["/.firepit/run", "/.firepit/run/guest.sock"] if os.path.lexists(p)]
    record("guest socket dir inside the machine", bool(present), present)
    # The guest's own listening socket is not inherited by what it runs.
    mine = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            try:
                s = socket.socket(fileno=os.dup(int(fd)))
                listening = s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                s.close()
                if listening:
                    mine.append(fd)
            except OSError:
                pass
    record("guest listening socket inherited", bool(mine), mine)


guest_is_untouchable()
guest_socket_out_of_reach()

print(json.dumps(results))
