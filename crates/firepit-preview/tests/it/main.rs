//! The preview engine's integration tests: both paths, end to end over
//! loopback sockets.

mod paths;
