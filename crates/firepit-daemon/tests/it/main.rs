//! Integration tests of the daemon's router, against a recording backend: no
//! machines are made here (the `firepit` crate's tests make real ones).

mod routes;
mod web;
