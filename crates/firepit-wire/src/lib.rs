//! firepit-wire (placeholder)
