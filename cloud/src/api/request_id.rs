//! Request ids: every answer carries `x-request-id`, the caller's own when
//! it sent an acceptable one (1 to [`MAX_REQUEST_ID_LEN`] characters, each
//! an ASCII letter, digit or one of `-_.:`), else one made here (32
//! lowercase hex digits). Handlers and the audit trail find it in the
//! request's extensions as [`RequestId`]; logs carry it through the
//! request's span.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use ring::rand::{SecureRandom as _, SystemRandom};
use tracing::Instrument as _;

/// The header that carries the request id, in both directions.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest request id accepted from a caller.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The id of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Whether a caller's request id is kept as it is.
fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A new id: 16 random bytes as hex (the time and a counter if the system's
/// random number generator fails, so a request never fails for want of an
/// id).
fn generate() -> String {
    use std::fmt::Write as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut bytes = [0u8; 16];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        let now = super::now_ms().to_be_bytes();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        bytes[..8].copy_from_slice(&now);
        bytes[8..].copy_from_slice(&n);
    }
    bytes.iter().fold(String::with_capacity(32), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Middleware: gives the request its id and echoes it in the answer.
pub async fn assign(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| acceptable(id))
        .map_or_else(generate, str::to_owned);
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::debug_span!("request", request_id = %id);
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_callers_are_checked() {
        assert!(acceptable("3f2a-01:b_c.d"));
        assert!(acceptable(&"a".repeat(MAX_REQUEST_ID_LEN)));
        assert!(!acceptable(""));
        assert!(!acceptable(&"a".repeat(MAX_REQUEST_ID_LEN + 1)));
        assert!(!acceptable("a b"));
        assert!(!acceptable("a\"b"));
    }

    #[test]
    fn generated_ids_are_hex_and_distinct() {
        let a = generate();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, generate());
        assert!(acceptable(&a));
    }
}
