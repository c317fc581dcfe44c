//! Loopback addresses for the processes tests start.

use std::net::SocketAddr;

/// A free loopback port (bound, read, released: another process could take it before the
/// one under test binds it, which that process then reports as a start-up error).
pub fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local address")
}
