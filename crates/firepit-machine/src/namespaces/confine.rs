//! What a machine's init gives up before it execs the guest: every
//! capability outside [`KEPT_CAPS`] (from the bounding set, so neither the
//! guest nor anything it runs regains them), new privileges
//! (`no_new_privs`), and the system calls of the seccomp filter built by
//! [`seccomp_program`].
//!
//! The filter is a deny list in front of an allow-all default, at least as
//! tight as Docker's default profile where it matters for getting out:
//! - x32 system calls (numbers with bit 30 set, [`X32_SYSCALL_BIT`]) are
//!   refused before any other check, so no denied call passes under its x32
//!   number on kernels built with x32;
//! - the calls in [`DENIED_SYSCALLS`] answer `EPERM`;
//! - `clone` and `unshare` with `CLONE_NEWUSER` answer `EPERM`: a nested user
//!   namespace would hand the capabilities dropped here back to its creator
//!   (inside that namespace), and with them the kernel code behind
//!   `CAP_SYS_ADMIN` and `CAP_NET_ADMIN` (mounts of many file systems,
//!   netfilter, …). Other namespaces need `CAP_SYS_ADMIN`, which is gone;
//! - `clone3` answers `ENOSYS`: its flags are in memory that seccomp cannot
//!   read, so it cannot be filtered by flag; `ENOSYS` makes glibc (and
//!   others) fall back to `clone`, whose flags are filtered (Docker does the
//!   same).

use std::collections::BTreeMap;
use std::io;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

use crate::Error;

/// Capabilities every process of a machine may keep: Docker's default set
/// without `CAP_NET_RAW` (`ping` uses ICMP datagram sockets, which the
/// launcher opens with `ping_group_range`) and `CAP_AUDIT_WRITE`. All others
/// (`CAP_SYS_ADMIN`, `CAP_NET_ADMIN`, `CAP_SYS_PTRACE`, `CAP_SYS_MODULE`,
/// `CAP_SYS_RAWIO`, `CAP_SYS_BOOT`, `CAP_SYS_TIME`, `CAP_MAC_ADMIN`,
/// `CAP_DAC_READ_SEARCH`, `CAP_SYS_RESOURCE`, …) leave the bounding set.
///
/// The guest needs no more than these for its own job (processes, ptys,
/// files, sockets and `NETLINK_SOCK_DIAG`), so it runs with the same set as
/// its children. Numbers from `linux/capability.h`.
pub(crate) const KEPT_CAPS: &[(u32, &str)] = &[
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (3, "CAP_FOWNER"),
    (4, "CAP_FSETID"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (8, "CAP_SETPCAP"),
    (10, "CAP_NET_BIND_SERVICE"),
    (18, "CAP_SYS_CHROOT"),
    (27, "CAP_MKNOD"),
    (31, "CAP_SETFCAP"),
];

/// Bit 30 of a system call number: the x32 ABI on x86_64 kernels.
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// System calls that fail with `EPERM` inside machines.
pub(crate) const DENIED_SYSCALLS: &[i64] = &[
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_acct,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_lookup_dcookie,
    libc::SYS_quotactl,
    libc::SYS_syslog,
    libc::SYS_vhangup,
    libc::SYS_fanotify_init,
    // io_uring: a large kernel surface of its own that seccomp cannot see
    // into (its operations bypass the filter); Docker refuses it too.
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    // Mounts and namespace changes: nothing in a machine may make them
    // (the launcher made its mounts before the filter went on).
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_setns,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_nfsservctl,
];

/// System calls refused when their first argument (the clone flags) asks
/// for a new user namespace.
pub(crate) const NO_NEW_USERNS: &[i64] = &[libc::SYS_clone, libc::SYS_unshare];

/// `AUDIT_ARCH_*` of this build's target (`linux/audit.h`).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "riscv64")]
const AUDIT_ARCH: u32 = 243 | 0x8000_0000 | 0x4000_0000;

// Classic BPF opcodes (linux/bpf_common.h) and `seccomp_data` offsets.
/// `BPF_LD | BPF_W | BPF_ABS` (0x00 | 0x00 | 0x20).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA)
}

/// The hand-written front of the filter: the architecture, then x32 numbers
/// (`EPERM`) and `clone3` (`ENOSYS`), which seccompiler's rules cannot
/// express (one match action per filter, and no check of the number's
/// range). Whatever passes goes on to seccompiler's program, which checks
/// the architecture again and loads the number itself.
fn front() -> Vec<sock_filter> {
    vec![
        stmt(BPF_LD_W_ABS, DATA_ARCH),
        // Another architecture: straight to seccompiler's program, which
        // kills the process.
        jump(BPF_JMP_JEQ_K, AUDIT_ARCH, 0, 5),
        stmt(BPF_LD_W_ABS, DATA_NR),
        jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET_K, errno(libc::EPERM)),
        jump(BPF_JMP_JEQ_K, libc::SYS_clone3 as u32, 0, 1),
        stmt(BPF_RET_K, errno(libc::ENOSYS)),
    ]
}

/// Builds the seccomp program (before the fork, so the child only applies it).
pub(crate) fn seccomp_program() -> Result<BpfProgram, Error> {
    let mut rules = DENIED_SYSCALLS
        .iter()
        .map(|&nr| (nr, Vec::new()))
        .collect::<BTreeMap<_, _>>();
    for &nr in NO_NEW_USERNS {
        let newuser = libc::CLONE_NEWUSER as u64;
        let cond = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(newuser),
            newuser,
        )
        .map_err(Error::Seccomp)?;
        rules.insert(
            nr,
            vec![SeccompRule::new(vec![cond]).map_err(Error::Seccomp)?],
        );
    }
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(Error::Seccomp)?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(Error::Seccomp)?;
    let mut program = front();
    program.extend(BpfProgram::try_from(filter).map_err(Error::Seccomp)?);
    Ok(program)
}

/// Drops every capability outside [`KEPT_CAPS`] from the bounding set, sets
/// `no_new_privs` and installs the seccomp program.
///
/// The caller is root of a user namespace it just entered, whose inheritable
/// and ambient sets the kernel left empty; the next `execve` (of the guest)
/// gives it the bounding set as its permitted and effective sets.
pub(crate) fn confine(program: &BpfProgram) -> io::Result<()> {
    for cap in 0..64u32 {
        if KEPT_CAPS.iter().any(|&(kept, _)| kept == cap) {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r != 0 {
            // EINVAL: past the last capability this kernel knows.
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    seccompiler::apply_filter(program).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_builds() {
        let p = seccomp_program().unwrap();
        assert!(p.len() > DENIED_SYSCALLS.len() + front().len());
    }

    #[test]
    fn dangerous_capabilities_are_not_kept() {
        // CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_MODULE, CAP_SYS_RAWIO,
        // CAP_SYS_PTRACE, CAP_SYS_ADMIN, CAP_SYS_BOOT, CAP_SYS_RESOURCE,
        // CAP_SYS_TIME, CAP_MAC_ADMIN, CAP_DAC_READ_SEARCH, CAP_BPF.
        for cap in [12, 13, 16, 17, 19, 21, 22, 24, 25, 33, 2, 39] {
            assert!(!KEPT_CAPS.iter().any(|&(c, _)| c == cap), "{cap}");
        }
    }

    /// Runs `f` in a thread of its own that installs the filter first
    /// (seccomp and `no_new_privs` bind only the calling thread), and returns
    /// what `f` returned.
    fn filtered<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let program = seccomp_program().unwrap();
        std::thread::spawn(move || {
            // SAFETY: prctl with integer arguments only.
            assert_eq!(
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) },
                0
            );
            seccompiler::apply_filter(&program).unwrap();
            f()
        })
        .join()
        .unwrap()
    }

    /// A raw system call: its result and errno.
    fn call(nr: i64, args: [u64; 3]) -> (i64, i32) {
        // SAFETY: the calls tested here take integers or null pointers, which
        // the kernel refuses (EFAULT, EINVAL) where the filter does not.
        let r = unsafe { libc::syscall(nr, args[0], args[1], args[2]) };
        (r, io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    #[test]
    fn the_filter_refuses_what_it_should_and_allows_the_rest() {
        let results = filtered(|| {
            let x32 = X32_SYSCALL_BIT as i64;
            [
                // getpid and a denied call under their x32 numbers: EPERM
                // from the filter (a kernel without x32 would say ENOSYS).
                call(x32 | libc::SYS_getpid, [0; 3]),
                call(x32 | libc::SYS_keyctl, [0; 3]),
                call(libc::SYS_io_uring_setup, [1, 0, 0]),
                call(libc::SYS_unshare, [libc::CLONE_NEWUSER as u64, 0, 0]),
                // With CLONE_FS the kernel itself would say EINVAL, so a
                // filter that let it through cannot fork this test.
                call(
                    libc::SYS_clone,
                    [(libc::CLONE_NEWUSER | libc::CLONE_FS) as u64, 0, 0],
                ),
                call(libc::SYS_clone3, [0, 0, 0]),
                call(libc::SYS_mount, [0, 0, 0]),
                call(libc::SYS_getpid, [0; 3]),
            ]
        });
        let eperm = (-1, libc::EPERM);
        assert_eq!(results[0], eperm, "x32 getpid");
        assert_eq!(results[1], eperm, "x32 keyctl");
        assert_eq!(results[2], eperm, "io_uring_setup");
        assert_eq!(results[3], eperm, "unshare(CLONE_NEWUSER)");
        assert_eq!(results[4], eperm, "clone(CLONE_NEWUSER)");
        assert_eq!(results[5], (-1, libc::ENOSYS), "clone3");
        assert_eq!(results[6], eperm, "mount");
        assert!(results[7].0 > 0, "getpid is allowed: {:?}", results[7]);
    }

    #[test]
    fn threads_and_processes_still_start() {
        // glibc starts threads with clone3 and falls back to clone on ENOSYS.
        let ok = filtered(|| {
            let t = std::thread::spawn(|| 7).join().unwrap();
            let status = std::process::Command::new("true").status().unwrap();
            t == 7 && status.success()
        });
        assert!(ok);
    }
}
