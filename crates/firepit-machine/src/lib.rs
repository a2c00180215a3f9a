//! firepit-machine (placeholder)
