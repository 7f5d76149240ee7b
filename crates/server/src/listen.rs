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
    let service = TowerToHyperService::new(tower::service_fn(move |request: Request<Incoming>| {
        let waiting = request
            .headers()
            .get(header::EXPECT)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let mut request = if waiting {
            request.map(axum::body::Body::new)
        } else {
            request.map(Lingering::wrap)
        };
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

/// The most of a request body left unread that is read and dropped, and for how long.
const LINGER_BYTES: usize = 8 * 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(2);

/// A request body that, when it is dropped before its end (a request refused before its body
/// was read: no token, too large, no such route), goes on being read and dropped in the
/// background, up to [`LINGER_BYTES`] within [`LINGER_TIME`]. A client still sending the body
/// then reads the answer, rather than a connection reset under it as the kernel discards unread
/// data (the "lingering close" of other servers). A client that asked to wait with
/// `Expect: 100-continue` has sent nothing and is not read from.
struct Lingering {
    body: Option<Incoming>,
}

impl Lingering {
    fn wrap(body: Incoming) -> axum::body::Body {
        axum::body::Body::new(Self { body: Some(body) })
    }
}

impl hyper::body::Body for Lingering {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let Some(body) = self.body.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let frame = std::pin::Pin::new(body).poll_frame(context);
        if matches!(frame, std::task::Poll::Ready(None)) {
            self.body = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body
            .as_ref()
            .is_none_or(hyper::body::Body::is_end_stream)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.as_ref().map_or_else(
            || hyper::body::SizeHint::with_exact(0),
            hyper::body::Body::size_hint,
        )
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(mut body) = self.body.take() else {
            return;
        };
        if hyper::body::Body::is_end_stream(&body) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            use hyper::body::Body as _;
            let drain = async {
                let mut read = 0;
                while read < LINGER_BYTES {
                    let frame = std::future::poll_fn(|context| {
                        std::pin::Pin::new(&mut body).poll_frame(context)
                    })
                    .await;
                    match frame {
                        Some(Ok(frame)) => read += frame.data_ref().map_or(0, |data| data.len()),
                        _ => break,
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER_TIME, drain).await;
        });
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
