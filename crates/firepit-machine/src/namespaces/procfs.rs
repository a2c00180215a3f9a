//! Small readers of `/proc/<pid>/...`.

use std::fs;

/// A process's start time (clock ticks after boot, field 22 of
/// `/proc/<pid>/stat`), which tells a process from a later one that reuses
/// its pid. `None` when the process does not exist or has exited (a zombie).
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    stat(pid).and_then(|(state, start)| (state != 'Z' && state != 'X').then_some(start))
}

/// Whether `pid` is a zombie that started at `start`.
pub(crate) fn is_zombie(pid: i32, start: u64) -> bool {
    stat(pid) == Some(('Z', start))
}

/// State letter and start time of a process.
fn stat(pid: i32) -> Option<(char, u64)> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(stat: &str) -> Option<(char, u64)> {
    // The command name may hold spaces and parentheses; fields after it
    // start at the last ')'. Field 3 is the state, field 22 the start time.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    Some((state, fields.nth(18)?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time() {
        assert!(start_time(std::process::id() as i32).is_some());
        assert!(start_time(i32::MAX).is_none());
    }

    #[test]
    fn odd_names_and_zombies() {
        let s = "12 (a) b (c) S 1 12 12 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 777 1 1";
        assert_eq!(parse_stat(s), Some(('S', 777)));
        let z = "12 (x) Z 1 12 12 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 777 1 1";
        assert_eq!(parse_stat(z), Some(('Z', 777)));
    }
}
