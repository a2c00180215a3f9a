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

# Host network: the host's listener, through the gateway address and loopback.
for host in [bait["gateway"], "127.0.0.1"]:
    ok, detail = connect(host, bait["host_port"])
    record(f"host service {host}:{bait['host_port']}", ok, detail)
ok, detail = connect(bait["gateway"], bait["daemon_port"])
record("daemon API via the gateway", ok, detail)
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


# The kernel surface, the capability sets, masked /proc, the OOM floor and
# address takeover: one function per family.

X32 = 0x40000000
REFUSED = (errno.EPERM, errno.ENOSYS)


def raw_syscall(nr, *args):
    ctypes.set_errno(0)
    rc = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return rc, ctypes.get_errno()


def check_kernel_surface():
    # x32 numbers of an allowed and of a denied call.
    for name, nr in [("getpid", 39), ("keyctl", 250)]:
        rc, err = raw_syscall(X32 | nr, 0, 0, 0, 0, 0)
        record(f"x32 syscall {name}", rc >= 0 or err not in REFUSED,
               f"rc={rc} errno={errno.errorcode.get(err, err)}")
    # io_uring_setup(1, NULL): EFAULT would mean it reached the kernel.
    rc, err = raw_syscall(425, 1, 0)
    record("io_uring_setup", rc >= 0 or err not in REFUSED,
           f"rc={rc} errno={errno.errorcode.get(err, err)}")
    # clone3 cannot be filtered by flags: it must be refused outright.
    rc, err = raw_syscall(435, 0, 0)
    record("clone3", rc >= 0 or err != errno.ENOSYS,
           f"rc={rc} errno={errno.errorcode.get(err, err)}")
    # A nested user namespace, tried in a child so that this process stays
    # as it is.
    for name, call in [
        ("unshare(CLONE_NEWUSER)", lambda: libc.unshare(0x10000000)),
        ("unshare(CLONE_NEWNS)", lambda: libc.unshare(0x00020000)),
    ]:
        pid = os.fork()
        if pid == 0:
            os._exit(0 if call() == 0 else 1)
        _, status = os.waitpid(pid, 0)
        made = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        record(name, made, f"status={status}")


DANGEROUS_CAPS = {
    2: "DAC_READ_SEARCH", 9: "LINUX_IMMUTABLE", 12: "NET_ADMIN", 13: "NET_RAW",
    14: "IPC_LOCK", 16: "SYS_MODULE", 17: "SYS_RAWIO", 19: "SYS_PTRACE",
    20: "SYS_PACCT", 21: "SYS_ADMIN", 22: "SYS_BOOT", 24: "SYS_RESOURCE",
    25: "SYS_TIME", 32: "MAC_OVERRIDE", 33: "MAC_ADMIN", 34: "SYSLOG",
    38: "PERFMON", 39: "BPF",
}


def check_capabilities():
    for who in ["self", "1"]:
        with open(f"/proc/{who}/status") as f:
            status = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
        for field in ["CapBnd", "CapPrm", "CapEff", "CapInh", "CapAmb"]:
            value = int(status[field].strip(), 16)
            held = [n for bit, n in DANGEROUS_CAPS.items() if value & (1 << bit)]
            record(f"capabilities {field} of {who}", held, ",".join(held))


MASKED_FILES = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                "/proc/latency_stats", "/proc/timer_stats"]
MASKED_DIRS = ["/proc/acpi", "/proc/asound", "/proc/scsi", "/sys/firmware",
               "/sys/devices/virtual/powercap"]


def check_masked_kernel_files():
    for path in MASKED_FILES:
        try:
            with open(path, "rb") as f:
                data = f.read(4096)
            record(f"read {path}", len(data) > 0, f"{len(data)} bytes")
        except OSError as e:
            record(f"read {path}", False, repr(e))
    for path in MASKED_DIRS:
        try:
            entries = os.listdir(path)
            record(f"list {path}", len(entries) > 0, entries[:5])
        except OSError as e:
            record(f"list {path}", False, repr(e))
    # The machine's own network namespace's knobs are read-only too: the
    # value is written back unchanged, so a write that works changes nothing.
    path = "/proc/sys/net/ipv4/ip_forward"
    try:
        with open(path) as f:
            value = f.read()
        with open(path, "w") as f:
            f.write(value)
        record(f"write {path}", True, "written")
    except OSError as e:
        record(f"write {path}", False, repr(e))


def check_oom_floor():
    with open("/proc/self/oom_score_adj") as f:
        own = int(f.read())
    record("oom_score_adj starts at 0", own != 0, own)
    for path, value in [("/proc/self/oom_score_adj", "-1000"), ("/proc/self/oom_score_adj", "-1"),
                        ("/proc/self/oom_adj", "-17"), ("/proc/1/oom_score_adj", "-1000")]:
        try:
            with open(path, "w") as f:
                f.write(value)
            record(f"write {value} to {path}", True, "written")
        except OSError as e:
            record(f"write {value} to {path}", False, repr(e))


def check_guest_memory():
    # The guest (PID 1) is non-dumpable: no process of the machine reads its
    # memory or environment.
    try:
        os.close(os.open("/proc/1/mem", os.O_RDONLY))
        record("open /proc/1/mem", True, "opened")
    except OSError as e:
        record("open /proc/1/mem", False, repr(e))
    try:
        with open("/proc/1/environ", "rb") as f:
            f.read(1)
        record("read /proc/1/environ", True, "read")
    except OSError as e:
        record("read /proc/1/environ", False, repr(e))


def check_address_takeover():
    # Another machine's address on our eth0: refused (no CAP_NET_ADMIN).
    import shutil
    import subprocess
    if shutil.which("ip"):
        p = subprocess.run(["ip", "addr", "add", bait["other_machine"] + "/32", "dev", "eth0"],
                           capture_output=True, text=True)
        record("ip addr add another machine's address", p.returncode == 0, p.stderr.strip())
    # A MAC change (to the MAC eth0 has, so a change that works changes nothing).
    import fcntl
    import struct
    with open("/sys/class/net/eth0/address") as f:
        mac = bytes(int(h, 16) for h in f.read().strip().split(":"))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifreq = struct.pack("16sH14s", b"eth0", 1, mac)
        fcntl.ioctl(s.fileno(), 0x8924, ifreq)  # SIOCSIFHWADDR
        record("set eth0's MAC", True, "set")
    except OSError as e:
        record("set eth0's MAC", False, repr(e))
    finally:
        s.close()


check_kernel_surface()
check_capabilities()
check_masked_kernel_files()
check_oom_floor()
check_guest_memory()
check_address_takeover()


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
