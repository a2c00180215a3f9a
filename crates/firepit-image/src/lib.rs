//! firepit-image (placeholder)
