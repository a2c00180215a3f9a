//! One file per subcommand.

pub mod agent;
pub mod checkpoint;
pub mod closed_loop;
pub mod cp;
pub mod entrypoint;
pub mod events;
pub mod exec;
pub mod image;
pub mod image_build;
pub mod image_oci;
pub mod lifecycle;
pub mod logs;
pub mod mcp;
pub mod ports;
pub mod postgres;
pub mod service;
pub mod share;
pub mod shell;
pub mod triage;
pub mod up;
