//! The admin server over real loopback HTTP.

use std::{sync::Arc, time::Duration};

use prometheus_client::{metrics::counter::Counter, registry::Registry};
use rssc_runtime::{
    admin::{AdminState, serve},
    health::Health,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
    time::timeout,
};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    };
    let response = timeout(Duration::from_secs(10), exchange)
        .await
        .expect("admin server answers");
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn serves_health_readiness_and_metrics() {
    let mut registry = Registry::with_prefix("rssc");
    let counter = Counter::<u64>::default();
    registry.register("reconciles", "Reconciles run", counter.clone());
    counter.inc_by(3);
    let health = Health::default();
    let state = AdminState {
        health: health.clone(),
        registry: Arc::new(registry),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state, async move {
        let _ = stopped.await;
    }));

    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".to_owned()));

    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503, "not ready before any check reports: {body}");
    health.set("session", Ok(()));
    assert_eq!(get(addr, "/readyz").await.0, 200);
    health.set("session", Err("409: another listener holds the session".into()));
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("another listener holds the session"), "{body}");

    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("rssc_reconciles_total 3"), "{body}");

    assert_eq!(get(addr, "/nope").await.0, 404);

    stop.send(()).unwrap();
    timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops on shutdown")
        .unwrap();
}
