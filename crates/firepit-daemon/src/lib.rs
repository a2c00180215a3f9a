//! firepit-daemon (placeholder)
