//! Privileged tests of the namespaces backend on real machines.
//!
//! They need root and an image: `FIREPIT_TEST_ROOTFS` names a root
//! filesystem tree whose ownership is shifted by `FIREPIT_TEST_UID_BASE`
//! (default 100000). The machines run a stand-in guest (`test_guest.py`, a
//! one-command-per-connection shell server) so that these tests do not depend
//! on the real guest's protocol.

mod checkpoint;
mod disk;
mod guest;
mod harness;
mod lifecycle;
mod limits;
mod network;
mod ranges;
mod security;
