//! Integration tests of the daemon: the router against a recording backend
//! (`routes`, `web`), and sessions' runtimes against guests run on the host
//! (`live`). No machines are made here (the `firepit` crate's tests make real
//! ones).

mod live;
mod routes;
mod web;
