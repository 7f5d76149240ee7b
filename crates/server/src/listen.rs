//! The listeners: HTTPS serving the router, and plain HTTP that only redirects to HTTPS. Each takes
//! an already-bound socket and a shutdown token, and drains its connections within a grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use http_api::PeerCertificate;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A client that has not finished its TLS handshake by then is dropped, so half-open connections
/// cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` over TLS on `listener` until `shutdown` is cancelled, then lets requests in
/// flight finish for up to `grace` and closes what is left.
pub async fn serve_https(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let acceptor = TlsAcceptor::from(tls);
    serve(
        listener,
        shutdown,
        grace,
        move |stream, peer, watcher, router| {
            let acceptor = acceptor.clone();
            async move {
                let Ok(Ok(tls_stream)) =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                else {
                    // Refused protocol versions and cipher suites end here; rustls has sent the alert.
                    return;
                };
                // The device listener's clients have proved a certificate; handlers read it.
                let certificate = tls_stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|leaf| PeerCertificate(Arc::from(leaf.as_ref())));
                serve_connection(TokioIo::new(tls_stream), router, peer, certificate, watcher)
                    .await;
            }
        },
        router,
    )
    .await;
}

/// Answers every plain-HTTP request with a permanent redirect to the same path on `https_base`.
pub async fn serve_redirect(
    listener: TcpListener,
    https_base: String,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let router =
        Router::new().fallback(move |request: Request| redirect(https_base.clone(), request));
    serve(
        listener,
        shutdown,
        grace,
        |stream, peer, watcher, router| async move {
            serve_connection(TokioIo::new(stream), router, peer, None, watcher).await;
        },
        router,
    )
    .await;
}

async fn redirect(https_base: String, request: Request) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str());
    match format!("{https_base}{path}").parse::<Uri>() {
        Ok(target) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, target.to_string())],
        )
            .into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

/// Serves one connection. Every request carries the peer's address as `ConnectInfo`, for
/// throttling by source address, and the client's certificate when it presented one.
async fn serve_connection<I>(
    io: I,
    router: Router,
    peer: SocketAddr,
    certificate: Option<PeerCertificate>,
    watcher: Watcher,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service =
        TowerToHyperService::new(tower::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            if let Some(certificate) = &certificate {
                request.extensions_mut().insert(certificate.clone());
            }
            router.clone().oneshot(request)
        }));
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection_with_upgrades(io, service);
    if let Err(error) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// The accept loop both listeners share. Every connection task is owned by a `JoinSet`, so none
/// outlives the listener.
async fn serve<F, Fut>(
    listener: TcpListener,
    shutdown: CancellationToken,
    grace: Duration,
    handle: F,
    router: Router,
) where
    F: Fn(TcpStream, SocketAddr, Watcher, Router) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tracing::trace!(%peer, "accepted connection");
                    connections.spawn(handle(stream, peer, graceful.watcher(), router.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "connections still open after the grace period; closing them"
        );
    }
    connections.shutdown().await;
}
