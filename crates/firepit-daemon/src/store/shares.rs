//! The `shares` table: signed preview links and whether they were revoked.
