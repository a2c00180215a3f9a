//! What a machine's init gives up before it execs the guest: capabilities a
//! sandbox has no use for (from the bounding set, so no descendant regains
//! them), new privileges (`no_new_privs`), and the system calls in
//! [`DENIED_SYSCALLS`] (a seccomp filter answering `EPERM`).
//!
//! clone/unshare/setns stay allowed: Chromium's sandbox and container tools
//! need nested namespaces, which the kernel bounds by the machine's own user
//! namespace.

use std::collections::BTreeMap;
use std::io;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

use crate::Error;

/// Capabilities dropped from the bounding set (numbers from
/// `linux/capability.h`).
pub(crate) const DROPPED_CAPS: &[(u32, &str)] = &[
    (9, "CAP_LINUX_IMMUTABLE"),
    // Raw and packet sockets: nothing a dev machine needs; `ping` uses ICMP
    // datagram sockets instead (the launcher opens `ping_group_range`).
    (13, "CAP_NET_RAW"),
    (16, "CAP_SYS_MODULE"),
    (17, "CAP_SYS_RAWIO"),
    // With the guest not dumpable, nothing in the machine can ptrace it,
    // read its memory or take its fds (pidfd_getfd). A process may still
    // trace its own (dumpable) kind: gdb and strace of one's programs work.
    (19, "CAP_SYS_PTRACE"),
    (20, "CAP_SYS_PACCT"),
    (22, "CAP_SYS_BOOT"),
    (25, "CAP_SYS_TIME"),
    (29, "CAP_AUDIT_WRITE"),
    (30, "CAP_AUDIT_CONTROL"),
    (32, "CAP_MAC_OVERRIDE"),
    (33, "CAP_MAC_ADMIN"),
    (34, "CAP_SYSLOG"),
    (35, "CAP_WAKE_ALARM"),
    (36, "CAP_BLOCK_SUSPEND"),
    (37, "CAP_AUDIT_READ"),
    (38, "CAP_PERFMON"),
    (39, "CAP_BPF"),
    (40, "CAP_CHECKPOINT_RESTORE"),
];

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
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_nfsservctl,
];

/// Builds the seccomp program (before the fork, so the child only applies it).
pub(crate) fn seccomp_program() -> Result<BpfProgram, Error> {
    let rules = DENIED_SYSCALLS
        .iter()
        .map(|&nr| (nr, Vec::new()))
        .collect::<BTreeMap<_, _>>();
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(Error::Seccomp)?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(Error::Seccomp)?;
    BpfProgram::try_from(filter).map_err(Error::Seccomp)
}

/// Drops [`DROPPED_CAPS`] from the bounding set, sets `no_new_privs` and
/// installs the seccomp program.
pub(crate) fn confine(program: &BpfProgram) -> io::Result<()> {
    for &(cap, _) in DROPPED_CAPS {
        // SAFETY: prctl with integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        // EINVAL: the kernel does not know this capability.
        if r != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
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
        assert!(p.len() > DENIED_SYSCALLS.len());
    }

    #[test]
    fn namespaces_stay_allowed() {
        for nr in [
            libc::SYS_clone,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_mount,
        ] {
            assert!(!DENIED_SYSCALLS.contains(&nr));
        }
    }
}
