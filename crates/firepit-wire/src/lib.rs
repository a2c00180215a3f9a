//! Wire types shared by the daemon and the things it talks to.
//!
//! [`api`] is the daemon's HTTP API, which clients use without pulling the daemon
//! in. [`guest`] is the protocol between the daemon and `firepit-guest`. This crate holds
//! types and pure encode/decode functions only: no I/O, no async runtime.
#![warn(missing_docs)]

pub mod agent;
pub mod api;
pub mod checkpoint;
pub mod events;
pub mod forge;
pub mod guest;
pub mod image_config;
#[cfg(test)]
mod ts;
