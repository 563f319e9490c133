//! A small client of the cloud's HTTP API over the workspace's `reqwest`
//! (rustls with ring as the process's crypto provider, as
//! `gridlink-provision register-ven` sets it up): enough for the demo to
//! wait for the API and for tests to call it.
//!
//! ```no_run
//! # async fn demo(api: std::net::SocketAddr, token: &str) -> Result<(), gridlink_demo::http::HttpError> {
//! use gridlink_demo::http::ApiClient;
//!
//! let client = ApiClient::new(api)?;
//! let answer = client.request("GET", "/api/v1/vens", Some(token), None).await?;
//! assert_eq!(answer.status, 200);
//! println!("{}", answer.json()["vens"]);
//! # Ok(())
//! # }
//! ```

use std::net::SocketAddr;
use std::time::Duration;

/// Longest one request may take, connect to last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot make an HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The method is not an HTTP method.
    #[error("{method:?} is not an HTTP method")]
    Method {
        /// The method given.
        method: String,
    },
    /// Connecting, sending or reading failed, or the answer was not
    /// well-formed HTTP.
    #[error("HTTP request to {addr} failed: {source}")]
    Request {
        /// The server.
        addr: SocketAddr,
        /// reqwest's error.
        source: reqwest::Error,
    },
    /// No complete answer within the time limit.
    #[error("HTTP request to {addr} timed out after {REQUEST_TIMEOUT:?}")]
    Timeout {
        /// The server.
        addr: SocketAddr,
    },
    /// The body is not UTF-8 text.
    #[error("malformed HTTP response from {addr}: the body is not UTF-8")]
    NotText {
        /// The server.
        addr: SocketAddr,
    },
}

/// A response: status code and body (as text; the API speaks JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The body.
    pub body: String,
}

impl HttpResponse {
    /// The body parsed as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A client of the API at one address (plain HTTP on loopback). It keeps
/// no idle connection, so nothing of it delays the cloud's graceful stop.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    addr: SocketAddr,
}

impl ApiClient {
    /// A client of the API at `addr`.
    pub fn new(addr: SocketAddr) -> Result<Self, HttpError> {
        // reqwest has no crypto provider compiled in and panics when none
        // is the process default: ring, as everywhere in gridlink. Fails
        // only if a default is already set.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(0)
            .user_agent(concat!("gridlink-demo/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(HttpError::Client)?;
        Ok(Self { http, addr })
    }

    /// Sends one request to `path` and reads the whole answer. `token`
    /// becomes an `Authorization: Bearer` header; `body` is sent as
    /// `application/json`.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Result<HttpResponse, HttpError> {
        let addr = self.addr;
        let method =
            reqwest::Method::from_bytes(method.as_bytes()).map_err(|_| HttpError::Method {
                method: method.to_owned(),
            })?;
        let mut request = self
            .http
            .request(method, format!("http://{addr}{path}"))
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_owned());
        }
        let failed = |source: reqwest::Error| {
            if source.is_timeout() {
                HttpError::Timeout { addr }
            } else {
                HttpError::Request { addr, source }
            }
        };
        let response = request.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(failed)?;
        let body = String::from_utf8(bytes.to_vec()).map_err(|_| HttpError::NotText { addr })?;
        Ok(HttpResponse { status, body })
    }
}

/// Sends one request with a client of its own (see [`ApiClient::request`]).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<HttpResponse, HttpError> {
    ApiClient::new(addr)?
        .request(method, path, token, body)
        .await
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// Serves `answer` (raw bytes, then close) to one connection on a free
    /// loopback port; returns the port's address.
    async fn answer_once(answer: &'static [u8]) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap() == 1 {
                head.push(byte[0]);
            }
            stream.write_all(answer).await.unwrap();
            stream.shutdown().await.unwrap();
        });
        addr
    }

    async fn get(answer: &'static [u8]) -> Result<HttpResponse, HttpError> {
        request(answer_once(answer).await, "GET", "/", None, None).await
    }

    #[tokio::test]
    async fn parses_plain_and_chunked_responses() {
        let plain = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(
            get(plain).await.unwrap(),
            HttpResponse {
                status: 401,
                body: "{}".into()
            }
        );
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        let response = get(chunked).await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.json()["a"], 1);
        assert!(get(b"HTTP/1.1 200 OK\r\n").await.is_err());
        assert!(
            get(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nab")
                .await
                .is_err()
        );
    }
}
