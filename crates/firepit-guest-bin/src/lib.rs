//! The firepit guest executable, statically linked, carried as bytes.
//!
//! The daemon writes [`GUEST`] into its data directory and bind-mounts it into
//! every machine as PID 1, so one `firepit` binary is all an install needs.

/// The static `firepit-guest` executable.
pub const GUEST: &[u8] = include_bytes!(env!("FIREPIT_GUEST_PATH"));

/// Where the build left the executable; tests use it without copying.
pub const GUEST_BUILD_PATH: &str = env!("FIREPIT_GUEST_PATH");
