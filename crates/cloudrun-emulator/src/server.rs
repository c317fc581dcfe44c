//! The HTTP/1.1 accept loop: serves the router on each connection and can reset a
//! connection from inside a request (the connection-reset fault).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::Service;

/// Lets a request handler reset the connection it arrived on; found in the request's
/// extensions.
#[derive(Clone, Debug)]
pub struct ConnControl {
    reset: Arc<Notify>,
}

impl ConnControl {
    /// Closes the connection with a TCP reset, without answering. The handler calling this
    /// should then never complete (its future is dropped with the connection).
    pub fn reset(&self) {
        self.reset.notify_one();
    }
}

/// The address of the peer a request came from; found in the request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Accepts connections until `shutdown` is cancelled, then drops every open connection.
pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, app.clone(), shutdown.clone()));
                }
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%err, "emulator: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    connections.shutdown().await;
}

async fn serve_connection(stream: TcpStream, app: Router, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok().map(PeerAddr);
    // A second handle on the socket, to set SO_LINGER=0 before a reset: the close that
    // follows then sends RST instead of FIN.
    let control_socket = socket2::SockRef::from(&stream).try_clone().ok();
    let reset = Arc::new(Notify::new());
    let control = ConnControl {
        reset: reset.clone(),
    };
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(control.clone());
        if let Some(peer) = peer {
            request.extensions_mut().insert(peer);
        }
        let mut app = app.clone();
        async move {
            Ok::<_, Infallible>(
                app.call(request)
                    .await
                    .unwrap_or_else(|never| match never {}),
            )
        }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let reset_requested = async {
        reset.notified().await;
        if let Some(socket) = &control_socket {
            let _ = socket.set_linger(Some(Duration::ZERO));
        }
    };
    tokio::select! {
        result = connection => {
            if let Err(err) = result {
                tracing::debug!(%err, "emulator: connection ended with an error");
            }
        }
        () = reset_requested => {}
        () = shutdown.cancelled() => {}
    }
}
