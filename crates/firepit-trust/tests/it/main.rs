//! The proxy relay against a stand-in proxy on 127.0.0.1: what reaches the
//! proxy, what the machine gets back, and what never leaves the relay.

mod relay;
