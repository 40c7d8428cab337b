//! The listening socket: poem's TCP acceptor with Nagle's algorithm turned off on every
//! connection it accepts.
//!
//! A WebSocket writes small frames as they come. With Nagle's algorithm on, a frame written
//! while an earlier one is still unacknowledged waits for that acknowledgement, which a client
//! may hold back for up to 40 ms (delayed ACK): live delivery had a p99 floor of about 50 ms at
//! a few hundred messages per second, however few the subscribers. The sockets already gather
//! what is queued into one write, so nothing is left for Nagle to merge.

use std::io;

use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use tokio::net::TcpStream;

/// Accepts TCP connections and sets `TCP_NODELAY` on each.
pub struct NoDelayAcceptor(pub TcpAcceptor);

impl Acceptor for NoDelayAcceptor {
    type Io = TcpStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.0.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(TcpStream, LocalAddr, RemoteAddr, Scheme)> {
        let accepted = self.0.accept().await?;
        if let Err(error) = accepted.0.set_nodelay(true) {
            // The connection still works, only with Nagle's delays.
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        Ok(accepted)
    }
}

#[cfg(test)]
mod tests {
    use poem::listener::Listener;

    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let listener = poem::listener::TcpListener::bind("127.0.0.1:0").into_acceptor().await.expect("bind");
        let mut acceptor = NoDelayAcceptor(listener);
        let address = acceptor.local_addr()[0].as_socket_addr().copied().expect("a TCP address");
        let client = TcpStream::connect(address);
        let (accepted, client) = tokio::join!(acceptor.accept(), client);
        let _client = client.expect("connect");
        let (stream, ..) = accepted.expect("accept");
        assert!(stream.nodelay().expect("read TCP_NODELAY"), "Nagle's algorithm is off");
    }
}
