//! A webhook receiver on 127.0.0.1: a minimal HTTP/1.1 server that records
//! every request (method, path, headers, body) and answers 500 to the
//! first N and 200 to the rest, so tests check payloads, signatures and
//! retries against a real socket.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use gridlink_testkit::webhook::WebhookReceiver;
//!
//! let receiver = WebhookReceiver::start(2).await; // fails the first two
//! // ... POST to receiver.url() ...
//! let requests = receiver.wait_for(3, Duration::from_secs(60)).await;
//! assert_eq!(requests[2].status, 200);
//! # }
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Longest request accepted.
const MAX_REQUEST: usize = 4 << 20;

/// One request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `POST`, ...
    pub method: String,
    /// The request target, e.g. `/hook`.
    pub path: String,
    /// Headers, names in lower case, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// What the receiver answered.
    pub status: u16,
}

impl RecordedRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct State {
    requests: Vec<RecordedRequest>,
    fail_left: usize,
}

/// The receiver; stops when dropped.
#[derive(Debug)]
pub struct WebhookReceiver {
    port: u16,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl WebhookReceiver {
    /// Listens on a free port of 127.0.0.1; the first `fail_first`
    /// requests get a 500.
    pub async fn start(fail_first: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the webhook receiver");
        let port = listener.local_addr().expect("its address").port();
        let state = Arc::new(Mutex::new(State {
            requests: Vec::new(),
            fail_left: fail_first,
        }));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let _ = serve(stream, &state).await;
                });
            }
        });
        Self { port, state, task }
    }

    /// The URL to POST to: `http://127.0.0.1:<port>/hook`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().expect("receiver state").requests.clone()
    }

    /// Waits until at least `n` requests arrived; panics after `timeout`
    /// (a hang guard) with what arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} webhook requests after {timeout:?}: {requests:?}",
                requests.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > MAX_REQUEST {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST);
    let mut body = buf[header_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    let status = {
        let mut state = state.lock().expect("receiver state");
        let status = if state.fail_left > 0 {
            state.fail_left -= 1;
            500
        } else {
            200
        };
        state.requests.push(RecordedRequest {
            method,
            path,
            headers,
            body,
            status,
        });
        status
    };
    let reason = if status == 200 {
        "OK"
    } else {
        "Internal Server Error"
    };
    let answer =
        format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(answer.as_bytes()).await?;
    stream.shutdown().await
}
