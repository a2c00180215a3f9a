//! End-to-end tests: the real `firepit` binary runs the daemon (`firepit up`)
//! and the CLI talks to it; machines are real, made from the test image.
//!
//! They need root and the environment `cargo xtask test` sets
//! (`FIREPIT_TEST_IMAGES`); without it they fail and say how to run them.

mod harness;

mod agent;
mod browser;
mod checkpoints;
mod cli;
mod default_image;
mod disk;
mod e2b;
mod events;
mod files;
mod flood;
mod forge;
mod isolation;
mod lifecycle;
mod mcp;
mod oci;
mod ports;
mod preview;
mod preview_reports;
mod schemathesis;
mod services;
mod terminal;
mod timeout;
mod trust;
mod ui;
mod ui_files;
mod ui_layout;
mod ui_services;
mod ui_sessions;
mod web;
mod workspace;
