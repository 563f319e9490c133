//! `/health` (JSON) and Prometheus `/metrics` on a local port.
//!
//! Two fixed GET routes do not justify an HTTP framework on a gateway, so
//! this is a small HTTP/1.1 responder on a tokio listener: one request per
//! connection, headers capped at 8 KiB, 5 s to send them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::metrics::Metrics;

const MAX_REQUEST_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let metrics = Arc::clone(&metrics);
                    tokio::spawn(async move {
                        if let Err(error) = respond(stream, &metrics).await {
                            tracing::debug!(%error, "health request failed");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "health listener accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => if *shutdown.borrow() { return },
        }
    }
}

async fn respond(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let complete = tokio::time::timeout(READ_TIMEOUT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            head.extend_from_slice(&chunk[..n]);
            if head.len() > MAX_REQUEST_HEAD {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await
    .unwrap_or(Ok(false))?;
    let (status, content_type, body) = if complete {
        route(&head, metrics)
    } else {
        (
            "400 Bad Request",
            "text/plain",
            "bad request: incomplete or oversized head\n".to_string(),
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await?;
    // Read what the client still sends (an oversized head) before closing,
    // so the kernel does not answer it with a reset that eats the response.
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while stream.read(&mut chunk).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
    Ok(())
}

fn route(head: &[u8], metrics: &Metrics) -> (&'static str, &'static str, String) {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = std::str::from_utf8(line).unwrap_or_default().split(' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = path.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/health") => ("200 OK", "application/json", health_json(metrics)),
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "not found: try /health or /metrics\n".into(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", "only GET\n".into()),
    }
}

fn health_json(metrics: &Metrics) -> String {
    let state = match metrics.connection_state.load(Ordering::Relaxed) {
        2 => "connected",
        1 => "connecting",
        _ => "disconnected",
    };
    format!(
        "{{\"status\":\"ok\",\"version\":\"{}\",\"mqtt\":\"{state}\",\"buffer_records\":{},\"buffer_bytes\":{},\"readings_acquired\":{},\"readings_published\":{},\"readings_dropped\":{}}}\n",
        env!("CARGO_PKG_VERSION"),
        metrics.buffer_records.load(Ordering::Relaxed),
        metrics.buffer_bytes.load(Ordering::Relaxed),
        metrics.readings_acquired.load(Ordering::Relaxed),
        metrics.readings_published.load(Ordering::Relaxed),
        metrics.readings_dropped.load(Ordering::Relaxed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ConnectionState;

    async fn get(addr: std::net::SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_health_and_metrics() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        metrics.readings_acquired.store(42, Ordering::Relaxed);
        metrics.set_connection_state(ConnectionState::Connected);
        let (tx, rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, Arc::clone(&metrics), rx));

        let health = get(addr, "GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
        assert!(
            health.contains("\"mqtt\":\"connected\"")
                && health.contains("\"readings_acquired\":42"),
            "{health}"
        );

        let text = get(addr, "GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(text.contains("text/plain; version=0.0.4"));
        assert!(
            text.contains("gridlink_readings_acquired_total 42\n"),
            "{text}"
        );

        assert!(
            get(addr, "GET /nope HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 404")
        );
        assert!(
            get(addr, "POST /health HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 405")
        );
        let huge = format!(
            "GET /health HTTP/1.1\r\nx: {}\r\n\r\n",
            "a".repeat(MAX_REQUEST_HEAD)
        );
        assert!(get(addr, &huge).await.starts_with("HTTP/1.1 400"));

        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .unwrap()
            .unwrap();
    }
}
