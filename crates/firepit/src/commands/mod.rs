//! One file per subcommand.

pub mod agent;
pub mod checkpoint;
pub mod cp;
pub mod events;
pub mod exec;
pub mod image;
pub mod lifecycle;
pub mod logs;
pub mod ports;
pub mod share;
pub mod shell;
pub mod triage;
pub mod up;
