//! The `events` table: each session's event log, keyed by (session, seq).
