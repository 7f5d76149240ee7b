//! TLS termination in front of rmqtt: Warden's rustls configuration accepts the connection, then
//! the bytes are copied to rmqtt's loopback listener. The forwarding socket's local address, which
//! rmqtt reports as the client's address, is recorded with the verified certificate before a byte
//! is forwarded, and removed when the connection ends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// What the TLS handshake proved about a connection, by the forwarding socket's local address.
#[derive(Debug, Default)]
pub(crate) struct Peers(Mutex<HashMap<SocketAddr, Peer>>);

#[derive(Clone, Debug)]
pub(crate) struct Peer {
    /// The verified client certificate (DER), if the client presented one.
    pub certificate: Option<Arc<[u8]>>,
    pub address: SocketAddr,
}

impl Peers {
    pub(crate) fn get(&self, forwarded_from: &SocketAddr) -> Option<Peer> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(forwarded_from)
            .cloned()
    }

    fn insert(&self, forwarded_from: SocketAddr, peer: Peer) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(forwarded_from, peer);
    }

    fn remove(&self, forwarded_from: &SocketAddr) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(forwarded_from);
    }
}

/// Accepts TLS connections until `shutdown`, each forwarded to `backend`.
pub(crate) async fn run(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    backend: SocketAddr,
    peers: Arc<Peers>,
    shutdown: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (socket, address) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "MQTT accept failed");
                continue;
            }
        };
        let (acceptor, peers, shutdown) = (acceptor.clone(), peers.clone(), shutdown.clone());
        connections.spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = forward(socket, address, acceptor, backend, peers) => {}
            }
        });
    }
    connections.shutdown().await;
}

async fn forward(
    socket: TcpStream,
    address: SocketAddr,
    acceptor: TlsAcceptor,
    backend: SocketAddr,
    peers: Arc<Peers>,
) {
    let _ = socket.set_nodelay(true);
    let mut tls = match acceptor.accept(socket).await {
        Ok(tls) => tls,
        Err(error) => {
            tracing::info!(%address, %error, "MQTT TLS handshake refused");
            return;
        }
    };
    let certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|der| Arc::from(der.as_ref()));
    let Ok(mut upstream) = TcpStream::connect(backend).await else {
        tracing::warn!("the MQTT broker's loopback listener does not answer");
        return;
    };
    // MQTT packets are small and each is awaited (PUBACK, SUBACK): no Nagle delay on either leg.
    let _ = upstream.set_nodelay(true);
    let Ok(forwarded_from) = upstream.local_addr() else {
        return;
    };
    peers.insert(
        forwarded_from,
        Peer {
            certificate,
            address,
        },
    );
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
    peers.remove(&forwarded_from);
}
