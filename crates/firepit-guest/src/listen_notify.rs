//! Every `listen()` in the machine, reported to the guest as it happens.
//!
//! At start, after its own socket listens, the guest installs a seccomp filter
//! on itself ([`install`]) that turns `listen` into `SECCOMP_RET_USER_NOTIF` and
//! lets every other call pass. Filters are inherited over fork and exec and
//! cannot be removed, so every process the machine ever runs (all of them
//! descend from the guest, PID 1) carries it; it stacks on the launcher's
//! filter, whose refusals take precedence. The kernel hands the guest a
//! listener descriptor (`SECCOMP_FILTER_FLAG_NEW_LISTENER`), which [`serve`]
//! gives to a thread of its own: for each notification it answers at once
//! with `SECCOMP_USER_NOTIF_FLAG_CONTINUE` (the call then runs as if nothing
//! had looked, with its normal result or error: `EBADF`, `ENOTSOCK`, …) and
//! then counts it on a [`tokio::sync::watch`] channel ([`subscribe`]), which
//! port watches follow (see [`crate::ports`]).
//!
//! The notification comes *before* the call runs, so a watch re-reads the
//! listening sockets at a few short delays after it. Nothing is decided on
//! the caller's arguments (which it could change under us), so
//! `SECCOMP_IOCTL_NOTIF_ID_VALID` is never needed: a caller that is gone by
//! the time of the answer makes it fail with `ENOENT`, which is fine.
//!
//! Why a thread and not the runtime: the answer must never wait for the
//! guest's other work (a `listen()` stays as fast as the kernel makes it),
//! and the guest itself is under the filter too, so a `listen()` of its own
//! on the runtime's thread, if it ever made one, would wait for itself. The
//! thread blocks in the kernel and costs nothing while nothing listens.
//!
//! Not covered: sockets that start listening in processes outside the
//! guest's tree (the daemon's own listeners made in the machine's network
//! namespace); port watches find those by their slow rescan.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

use tokio::sync::watch;

/// Counts `listen()` calls seen, once [`serve`] runs.
static LISTENS: OnceLock<watch::Sender<u64>> = OnceLock::new();

/// `AUDIT_ARCH_*` of this build's target (`linux/audit.h`).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "riscv64")]
const AUDIT_ARCH: u32 = 243 | 0x8000_0000 | 0x4000_0000;

/// `SECCOMP_IOCTL_NOTIF_SET_FLAGS`: wake the other side on this CPU (linux/seccomp.h).
const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;

/// Bit 30 of a system call number: the x32 ABI on x86_64 kernels.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// Classic BPF opcodes (linux/bpf_common.h) and `seccomp_data` offsets.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_RET_K: u16 = 0x06;
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: BPF_JMP_JEQ_K,
        jt,
        jf,
        k,
    }
}

/// The filter: `listen` (also under its x32 number) notifies, all else passes.
///
/// Only constant comparisons of the number and the architecture, so the
/// kernel's per-call cache lets every other call skip this filter entirely.
/// Calls of another architecture pass here; the machine's own filter kills
/// them.
pub fn program() -> Vec<libc::sock_filter> {
    let listen = libc::SYS_listen as u32;
    vec![
        stmt(BPF_LD_W_ABS, DATA_ARCH),
        jump(AUDIT_ARCH, 0, 3),
        stmt(BPF_LD_W_ABS, DATA_NR),
        jump(listen, 2, 0),
        jump(listen | X32_SYSCALL_BIT, 1, 0),
        stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW),
        stmt(BPF_RET_K, libc::SECCOMP_RET_USER_NOTIF),
    ]
}

/// Installs the filter on the calling thread (and so on every process and
/// thread it starts from now on) and returns the listener descriptor.
///
/// Call it while the process has one thread, after the guest's own sockets
/// listen. It needs `no_new_privs` (which machines have) or `CAP_SYS_ADMIN`;
/// without them, or on a kernel without user notification (before 5.5, for
/// `SECCOMP_USER_NOTIF_FLAG_CONTINUE`), or where a filter above already has a
/// listener (`EBUSY`), it fails and installs nothing.
pub fn install() -> io::Result<OwnedFd> {
    // The kernel must know the answer that lets a call go on, or the filter
    // would hold every `listen()` it cannot let through.
    let mut sizes = libc::seccomp_notif_sizes {
        seccomp_notif: 0,
        seccomp_notif_resp: 0,
        seccomp_data: 0,
    };
    // SAFETY: the kernel writes a `seccomp_notif_sizes` into `sizes`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_NOTIF_SIZES,
            0,
            &mut sizes as *mut libc::seccomp_notif_sizes,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if usize::from(sizes.seccomp_notif) != std::mem::size_of::<libc::seccomp_notif>()
        || usize::from(sizes.seccomp_notif_resp) != std::mem::size_of::<libc::seccomp_notif_resp>()
    {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the kernel's seccomp notification structures differ from ours",
        ));
    }
    let mut filter = program();
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `filter`, alive for the call; the kernel copies it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &prog as *const libc::sock_fprog,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // Wakeups between caller and guest on one CPU (kernel 6.6+; older ones
    // refuse the flag, and wake as usual).
    // SAFETY: ioctl with an integer argument.
    unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS,
            SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP,
        )
    };
    // The kernel makes it close-on-exec already; no child may ever hold it
    // (it could hold back every `listen()` of the machine).
    // SAFETY: fcntl on a descriptor we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Answers every notification on `fd` from a thread of its own, for the
/// rest of the process's life, and publishes the count for [`subscribe`].
pub fn serve(fd: OwnedFd) -> io::Result<()> {
    let (tx, _) = watch::channel(0u64);
    let tx = LISTENS.get_or_init(|| tx).clone();
    std::thread::Builder::new()
        .name("listen-notify".into())
        .stack_size(64 * 1024)
        .spawn(move || answer(&fd, &tx))?;
    Ok(())
}

/// `listen()` calls seen from now on: `None` when nothing reports them (no
/// filter installed), so the caller must look by itself.
pub fn subscribe() -> Option<watch::Receiver<u64>> {
    LISTENS.get().map(watch::Sender::subscribe)
}

fn answer(fd: &OwnedFd, tx: &watch::Sender<u64>) -> ! {
    let mut complained = false;
    loop {
        // SAFETY: all-zero is a valid `seccomp_notif`, and the kernel wants it zeroed.
        let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: the kernel writes one `seccomp_notif` into `req`.
        let r = unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &mut req as *mut libc::seccomp_notif,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // Interrupted, or the caller went away before we read it.
                Some(libc::EINTR | libc::ENOENT) => {}
                _ => {
                    // Never seen; keep answering rather than leave callers waiting.
                    if !complained {
                        eprintln!("firepit-guest: reading listen() notifications: {e}");
                        complained = true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
            continue;
        }
        let resp = libc::seccomp_notif_resp {
            id: req.id,
            val: 0,
            error: 0,
            flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
        };
        // SAFETY: the kernel reads one `seccomp_notif_resp` from `resp`.
        // ENOENT: the caller was interrupted or is gone; nothing to do.
        unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                &resp as *const libc::seccomp_notif_resp,
            )
        };
        // Let the caller run its listen() before the watches look.
        std::thread::yield_now();
        tx.send_modify(|n| *n = n.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the filter over a `seccomp_data` with `arch` and `nr`, as the
    /// kernel would (the program only loads those two words and jumps).
    fn run(arch: u32, nr: u32) -> u32 {
        let p = program();
        let mut pc = 0;
        let mut acc = 0u32;
        loop {
            let i = p[pc];
            match i.code {
                BPF_LD_W_ABS => {
                    acc = if i.k == DATA_ARCH { arch } else { nr };
                    pc += 1;
                }
                BPF_JMP_JEQ_K => {
                    pc += 1 + usize::from(if acc == i.k { i.jt } else { i.jf });
                }
                BPF_RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn only_listen_notifies() {
        let listen = libc::SYS_listen as u32;
        assert_eq!(run(AUDIT_ARCH, listen), libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(
            run(AUDIT_ARCH, listen | X32_SYSCALL_BIT),
            libc::SECCOMP_RET_USER_NOTIF
        );
        for nr in [libc::SYS_bind, libc::SYS_accept4, libc::SYS_close, 0] {
            assert_eq!(run(AUDIT_ARCH, nr as u32), libc::SECCOMP_RET_ALLOW, "{nr}");
        }
        // Another architecture: this filter lets it pass (the machine's kills it).
        assert_eq!(run(3 | 0x4000_0000, listen), libc::SECCOMP_RET_ALLOW);
    }

    /// A raw `listen()`: its result and errno.
    fn listen(fd: i32) -> (i32, i32) {
        // SAFETY: listen takes integers; bad descriptors are the kernel's to refuse.
        let r = unsafe { libc::listen(fd, 8) };
        (r, io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    #[test]
    fn listen_is_reported_and_runs_unchanged() {
        // In a thread of its own: no_new_privs and the filter bind only it (and what it
        // starts), never the other tests.
        std::thread::spawn(|| {
            // SAFETY: prctl with integer arguments only.
            assert_eq!(
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) },
                0
            );
            serve(install().expect("the filter installs")).unwrap();
            let mut seen = subscribe().expect("listens are reported");
            let before = *seen.borrow_and_update();

            let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            assert!(tcp.local_addr().unwrap().port() > 0);
            let file = std::fs::File::open("/proc/self/status").unwrap();
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            // The kernel's own answers, unchanged by the round trip.
            assert_eq!(listen(-1), (-1, libc::EBADF));
            assert_eq!(listen(100_000), (-1, libc::EBADF));
            assert_eq!(listen(file.as_raw_fd()), (-1, libc::ENOTSOCK));
            assert_eq!(listen(udp.as_raw_fd()), (-1, libc::EOPNOTSUPP));
            // A child (fork + exec) inherits the filter: its listen() is reported too.
            let status = std::process::Command::new("python3")
                .args([
                    "-c",
                    "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()",
                ])
                .status();
            let child = status.as_ref().map(|s| s.success());
            // The count is bumped after each answer; wait for the last one.
            let want = before + 5 + u64::from(matches!(child, Ok(true)));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                while *seen.borrow_and_update() < want {
                    seen.changed().await.unwrap();
                }
            });
            drop(tcp);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn jumps_stay_inside_the_program() {
        let p = program();
        for (pc, i) in p.iter().enumerate() {
            if i.code == BPF_JMP_JEQ_K {
                assert!(pc + 1 + usize::from(i.jt.max(i.jf)) < p.len(), "{pc}");
            }
        }
        assert_eq!(p.last().unwrap().code, BPF_RET_K);
    }
}
