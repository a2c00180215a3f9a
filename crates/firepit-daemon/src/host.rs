//! What the host has (`GET /v1/host`: memory, CPUs, defaults) and what a
//! session's machine uses now (`GET /v1/sessions/{id}/usage`).
//!
//! Both are read when asked: nothing samples in the background, so a
//! session nobody looks at costs nothing. A client that wants a CPU share
//! takes two readings of `cpu_usec` and divides by the time between them.

use firepit_util::now_ms;
use firepit_wire::api::{HostInfo, SessionState, Usage};

use crate::{App, Error};

/// The host's memory and what is available now, bytes, from `/proc/meminfo`.
pub fn memory() -> Result<(u64, u64), Error> {
    let text = std::fs::read_to_string("/proc/meminfo").map_err(|source| Error::Io {
        what: "reading /proc/meminfo".into(),
        source,
    })?;
    parse_meminfo(&text).ok_or_else(|| Error::Io {
        what: "reading /proc/meminfo".into(),
        source: std::io::Error::other("it has no MemTotal line"),
    })
}

/// `MemTotal` and `MemAvailable` (`MemFree` on kernels without it), bytes.
fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kib * 1024)
        })
    };
    let total = field("MemTotal")?;
    let available = field("MemAvailable").or_else(|| field("MemFree"))?;
    Some((total, available))
}

/// The CPUs the daemon may use.
pub fn cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// Refuses a memory limit above what the host has.
pub fn check_memory(limit: Option<u64>) -> Result<(), Error> {
    let Some(asked) = limit else { return Ok(()) };
    let (host, _) = memory()?;
    check_memory_against(asked, host)
}

fn check_memory_against(asked: u64, host: u64) -> Result<(), Error> {
    if asked > host {
        return Err(Error::MoreThanHost { asked, host });
    }
    Ok(())
}

impl App {
    /// What the host has, and what sessions get by default.
    pub fn host_info(&self) -> Result<HostInfo, Error> {
        let (memory_bytes, memory_available_bytes) = memory()?;
        Ok(HostInfo {
            memory_bytes,
            memory_available_bytes,
            cpus: cpus(),
            disk_limits: self.config().disk_pool != crate::config::DiskPool::Off,
            default_image: self.config().default_image.clone(),
            default_limits: self.config().default_limits.clone(),
            forge: self.forge().token().is_ok(),
        })
    }

    /// What session `id`'s machine uses now.
    pub async fn session_usage(&self, id: &str) -> Result<Usage, Error> {
        let session = self.store().session(id)?;
        let time_ms = now_ms();
        if session.state == SessionState::Creating {
            return Ok(Usage {
                time_ms,
                ..Usage::default()
            });
        }
        let u = self.machine(id, |b, m| b.usage(m)).await?;
        Ok(Usage {
            running: session.state == SessionState::Running && u.memory_bytes.is_some(),
            time_ms,
            cpu_usec: u.cpu_usec,
            memory_bytes: u.memory_bytes,
            pids: u.pids,
            disk_bytes: u.disk_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_read_in_bytes() {
        let text =
            "MemTotal:       24000000 kB\nMemFree:         1000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(
            parse_meminfo(text),
            Some((24_000_000 * 1024, 20_000_000 * 1024))
        );
        assert_eq!(
            parse_meminfo("MemTotal: 4 kB\nMemFree: 2 kB\n"),
            Some((4096, 2048))
        );
        assert_eq!(parse_meminfo("nothing"), None);
        let (total, available) = memory().unwrap();
        assert!(total > 0 && available <= total);
    }

    #[test]
    fn more_memory_than_the_host_has_is_refused() {
        check_memory_against(1 << 30, 2 << 30).unwrap();
        check_memory_against(2 << 30, 2 << 30).unwrap();
        let e = check_memory_against(500 << 30, 23 << 30).unwrap_err();
        assert!(matches!(e, Error::MoreThanHost { .. }));
        assert!(e.to_string().contains("more than this host has"), "{e}");
        assert_eq!(
            e.status_and_code(),
            (axum::http::StatusCode::CONFLICT, "more_than_host")
        );
    }
}
