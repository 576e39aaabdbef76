//! The server's accept loop: what a production HTTP server bounds before a request reaches a
//! route. `axum::serve` has no header-read timeout, so connections are served here with
//! hyper's HTTP/1 builder and its timer.
//!
//! | bound                    | what it stops                                                  |
//! |--------------------------|----------------------------------------------------------------|
//! | `header_timeout`         | a client sending its headers (or its TLS handshake) slowly, or |
//! |                          | a keep-alive connection idle that long: hyper measures the     |
//! |                          | next request's headers from when the connection turns idle     |
//! | `max_connections`        | more sockets than that: the next `accept` waits for a free one |
//! | `max_connection_age`     | a keep-alive connection held for ever (it closes after its     |
//! |                          | request in flight, so clients spread over the replicas again)  |
//! | request timeout, limit   | per request, in the router (`server::bounded`)                 |

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// The server's bounds on connections and requests, each a `pipeline serve` flag.
#[derive(Debug, Clone)]
pub struct Limits {
    /// To send a request's headers (and finish a TLS handshake); also how long a keep-alive
    /// connection may wait idle for its next request.
    pub header_timeout: Duration,
    /// To answer one request, its body included; past it the client gets 408.
    pub request_timeout: Duration,
    /// Open connections at once.
    pub max_connections: usize,
    /// Requests being answered at once; the others wait their turn within their timeout.
    pub max_in_flight: usize,
    /// A connection is closed (gracefully) once it is this old.
    pub max_connection_age: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_in_flight: 256,
            max_connection_age: Duration::from_secs(600),
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Serves `router` on `listener` until `stop` resolves; then stops accepting, lets each
/// connection finish its request in flight (at most the request timeout) and returns.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    tls: Option<super::tls::Tls>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing, closed) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        let slot = tokio::select! {
            _ = &mut stop => break,
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
        };
        let tcp = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was taken:
                    // the listener itself is fine, so wait a moment and go on.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let (router, limits, tls, closed) = (router.clone(), limits.clone(), tls.clone(), closed.clone());
        connections.spawn(async move {
            connection(tcp, router, &limits, tls, closed).await;
            drop(slot);
        });
    }
    let _ = closing.send(true);
    let grace = limits.request_timeout + Duration::from_secs(1);
    if tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await.is_err() {
        tracing::warn!("{} connections still open {grace:?} after shutdown began; closing them", connections.len());
    }
    Ok(())
}

async fn connection(tcp: tokio::net::TcpStream, router: axum::Router, limits: &Limits, tls: Option<super::tls::Tls>, mut closed: watch::Receiver<bool>) {
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = match tls {
        None => Box::new(tcp),
        Some(tls) => match tokio::time::timeout(limits.header_timeout, tls.acceptor().accept(tcp)).await {
            Ok(Ok(stream)) => Box::new(stream),
            Ok(Err(e)) => {
                tracing::debug!("TLS handshake failed: {e}");
                return;
            }
            Err(_) => return,
        },
    };
    let service = hyper_util::service::TowerToHyperService::new(router);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(conn);
    let age = tokio::time::sleep(limits.max_connection_age);
    tokio::pin!(age);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = &mut age => {}
        _ = closed.wait_for(|c| *c) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(limits.request_timeout, conn).await;
}
