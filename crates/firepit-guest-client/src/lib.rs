//! firepit-guest-client (placeholder)
