//! What a machine is made of: its id, image, limits and network.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The smallest memory limit a machine may have: the guest and a shell must fit.
pub const MIN_MEMORY: u64 = 16 << 20;
/// The fewest processes a machine may be allowed.
pub const MIN_PIDS: u64 = 8;
/// The smallest disk limit a machine may have: an image's skeleton and a
/// shell's files must fit.
pub const MIN_DISK: u64 = 16 << 20;
/// How many uids (and gids) a machine's user namespace maps.
pub const UID_COUNT: u32 = 65536;

/// A machine's id: 1-40 characters of `[a-z0-9-]`, not starting or ending
/// with `-`. It is also the machine's hostname and a path component.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MachineId(String);

impl MachineId {
    /// Checks and wraps an id.
    pub fn new(id: impl Into<String>) -> Result<Self, Error> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= 40
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !id.starts_with('-')
            && !id.ends_with('-');
        if valid {
            Ok(Self(id))
        } else {
            Err(Error::InvalidId(id))
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MachineId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl From<MachineId> for String {
    fn from(id: MachineId) -> String {
        id.0
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Resource limits of a machine.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory (and memory plus swap) in bytes.
    pub memory_bytes: u64,
    /// CPU time as a number of CPUs (0.5 = half of one CPU).
    pub cpus: f64,
    /// The most processes and threads at once.
    pub pids: u64,
    /// The most its writable layer (every file it writes, and its guest's
    /// log) may hold, in bytes; writing past it fails with "disk quota
    /// exceeded" inside. `None`: no limit (machines made before disk limits
    /// existed, or a backend without a disk pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
}

impl Limits {
    /// Checks the limits against the host's CPU count.
    pub fn validate(&self, host_cpus: usize) -> Result<(), Error> {
        let bad = |m: String| Err(Error::InvalidSpec(m));
        if self.memory_bytes < MIN_MEMORY {
            return bad(format!(
                "memory limit {} bytes is below the minimum of {} MiB",
                self.memory_bytes,
                MIN_MEMORY >> 20
            ));
        }
        if !self.cpus.is_finite() || self.cpus < 0.01 {
            return bad(format!(
                "cpus {} must be a number of at least 0.01",
                self.cpus
            ));
        }
        if self.cpus > host_cpus as f64 {
            return bad(format!(
                "cpus {} is more than the host's {host_cpus}",
                self.cpus
            ));
        }
        if self.pids < MIN_PIDS {
            return bad(format!(
                "pids limit {} is below the minimum of {MIN_PIDS}",
                self.pids
            ));
        }
        if let Some(disk) = self.disk_bytes
            && disk < MIN_DISK
        {
            return bad(format!(
                "disk limit {disk} bytes is below the minimum of {} MiB",
                MIN_DISK >> 20
            ));
        }
        Ok(())
    }
}

/// A machine's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// Egress to the outside through NAT; the host and other machines are
    /// out of reach.
    Nat,
    /// Loopback only.
    None,
}

/// Everything needed to create a machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineSpec {
    /// The machine's id and hostname.
    pub id: MachineId,
    /// The image: a directory tree used as the read-only lower layer, whose
    /// files are owned by uids shifted by `uid_base`.
    pub image: PathBuf,
    /// Read-only layers stacked below `image`, topmost first (an OCI image's unpacked
    /// layers, shared by the images made of them), owned as `image` is. Empty: `image` is
    /// the whole tree.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<PathBuf>,
    /// The image's owner base: its files are owned by `uid_base + id inside`
    /// (65536 ids). The namespaces backend gives each machine a range of its
    /// own and maps the image onto it; a machine it made before ranges were
    /// per machine runs in this range.
    pub uid_base: u32,
    /// Resource limits.
    pub limits: Limits,
    /// Network mode.
    pub network: Network,
    /// Host path of the static guest executable, run as the machine's PID 1.
    pub guest: PathBuf,
}

impl MachineSpec {
    /// Checks the spec: limits, uid range, and that the paths exist.
    pub fn validate(&self, host_cpus: usize) -> Result<(), Error> {
        self.limits.validate(host_cpus)?;
        if self.uid_base == 0 || self.uid_base.checked_add(UID_COUNT).is_none() {
            return Err(Error::InvalidSpec(format!(
                "uid_base {} must be above 0 and leave room for {UID_COUNT} ids",
                self.uid_base
            )));
        }
        if !self.image.is_absolute() || !self.image.is_dir() {
            return Err(Error::InvalidSpec(format!(
                "image {} is not an absolute path to a directory",
                self.image.display()
            )));
        }
        overlay_option_path("image path", &self.image)?;
        if self.layers.len() + 1 > MAX_LOWERS {
            return Err(Error::InvalidSpec(format!(
                "{} layers stacked below the image; at most {} may be",
                self.layers.len(),
                MAX_LOWERS - 1
            )));
        }
        for layer in &self.layers {
            if !layer.is_absolute() || !layer.is_dir() {
                return Err(Error::InvalidSpec(format!(
                    "image layer {} is not an absolute path to a directory",
                    layer.display()
                )));
            }
            overlay_option_path("image layer path", layer)?;
        }
        if !self.guest.is_absolute() || !self.guest.is_file() {
            return Err(Error::InvalidSpec(format!(
                "guest {} is not an absolute path to a file",
                self.guest.display()
            )));
        }
        Ok(())
    }
}

/// The most read-only layers (the image's own tree and the layers below it) a machine
/// stacks: well under overlayfs's limit (500), and short enough that the mount options of
/// the machine's overlay fit in a page. Image makers flatten the oldest layers of a longer
/// stack into one.
pub const MAX_LOWERS: usize = 64;

/// Refuses a path that cannot go into overlayfs options (which are separated
/// by ',' and ':'): the image, and the dirs upper and work dirs are made in.
pub(crate) fn overlay_option_path(what: &str, path: &std::path::Path) -> Result<(), Error> {
    if path.to_str().is_none_or(|s| s.contains([',', ':', '\\'])) {
        return Err(Error::InvalidSpec(format!(
            "{what} {} must be UTF-8 without ',', ':' or '\\'",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            memory_bytes: 256 << 20,
            cpus: 1.0,
            pids: 512,
            disk_bytes: Some(1 << 30),
        }
    }

    #[test]
    fn ids() {
        for ok in ["a", "abc-123", "0", "s-1-2"] {
            MachineId::new(ok).unwrap();
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a/b", "..", &"x".repeat(41)] {
            assert!(MachineId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn id_deserialization_validates() {
        assert!(serde_json::from_str::<MachineId>("\"../x\"").is_err());
        assert_eq!(
            serde_json::from_str::<MachineId>("\"ok\"")
                .unwrap()
                .as_str(),
            "ok"
        );
    }

    #[test]
    fn limits_validation() {
        limits().validate(2).unwrap();
        let cases = [
            Limits {
                memory_bytes: 0,
                ..limits()
            },
            Limits {
                cpus: -1.0,
                ..limits()
            },
            Limits {
                cpus: 0.0,
                ..limits()
            },
            Limits {
                cpus: f64::NAN,
                ..limits()
            },
            Limits {
                cpus: 3.0,
                ..limits()
            },
            Limits {
                pids: 0,
                ..limits()
            },
            Limits {
                disk_bytes: Some(MIN_DISK - 1),
                ..limits()
            },
        ];
        for l in cases {
            let err = l.validate(2).unwrap_err().to_string();
            assert!(err.starts_with("invalid machine spec"), "{err}");
        }
    }

    #[test]
    fn specs_written_before_disk_limits_read_as_unlimited() {
        let old = r#"{"memory_bytes":268435456,"cpus":1.0,"pids":256}"#;
        let l: Limits = serde_json::from_str(old).unwrap();
        assert_eq!(l.disk_bytes, None);
        let json = serde_json::to_string(&l).unwrap();
        assert!(!json.contains("disk"), "{json}");
    }

    #[test]
    fn spec_validation() {
        let spec = MachineSpec {
            id: MachineId::new("m").unwrap(),
            image: "/".into(),
            layers: Vec::new(),
            uid_base: 100000,
            limits: limits(),
            network: Network::None,
            guest: "/proc/self/exe".into(),
        };
        spec.validate(2).unwrap();
        assert!(
            MachineSpec {
                uid_base: 0,
                ..spec.clone()
            }
            .validate(2)
            .is_err()
        );
        assert!(
            MachineSpec {
                uid_base: u32::MAX - 5,
                ..spec.clone()
            }
            .validate(2)
            .is_err()
        );
        assert!(
            MachineSpec {
                image: "/nonexistent".into(),
                ..spec.clone()
            }
            .validate(2)
            .is_err()
        );
        assert!(
            MachineSpec {
                image: "rel".into(),
                ..spec.clone()
            }
            .validate(2)
            .is_err()
        );
        assert!(
            MachineSpec {
                layers: vec!["rel".into()],
                ..spec.clone()
            }
            .validate(2)
            .is_err()
        );
        assert!(
            MachineSpec {
                layers: vec!["/".into(); MAX_LOWERS],
                ..spec.clone()
            }
            .validate(2)
            .is_err()
        );
        MachineSpec {
            layers: vec!["/".into(); MAX_LOWERS - 1],
            ..spec.clone()
        }
        .validate(2)
        .unwrap();
        assert!(
            MachineSpec {
                guest: "/".into(),
                ..spec
            }
            .validate(2)
            .is_err()
        );
    }
}
