//! HTTP request counters by route, method and status, with answer time,
//! rendered at `/metrics` after the ingest metrics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

/// The route label of requests no route matched (so unknown paths cannot
/// grow the number of series).
pub const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Debug, Default, Clone, Copy)]
struct Counter {
    requests: u64,
    micros: u64,
}

/// Requests answered, by route template (`/api/v1/vens/{id}`), method and
/// status.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    counters: Mutex<BTreeMap<(String, &'static str, u16), Counter>>,
}

impl RequestMetrics {
    /// Counts one answered request.
    pub fn record(&self, route: &str, method: &Method, status: u16, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        let counter = counters
            .entry((route.to_string(), method_label(method), status))
            .or_default();
        counter.requests += 1;
        counter.micros = counter.micros.saturating_add(micros);
    }

    /// Requests counted for `route`, `method` and `status` so far.
    pub fn count(&self, route: &str, method: &Method, status: u16) -> u64 {
        let counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        counters
            .get(&(route.to_string(), method_label(method), status))
            .map_or(0, |c| c.requests)
    }

    /// The Prometheus text exposition: `gridlink_http_requests_total` by
    /// route, method and status, and `gridlink_http_request_duration_seconds`
    /// (sum and count) by route and method.
    pub fn render(&self) -> String {
        let counters = self
            .counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut out = String::new();
        out.push_str(
            "# HELP gridlink_http_requests_total HTTP requests answered, by route, method and status.\n\
             # TYPE gridlink_http_requests_total counter\n",
        );
        let mut durations: BTreeMap<(&str, &str), Counter> = BTreeMap::new();
        for ((route, method, status), counter) in &counters {
            let _ = writeln!(
                out,
                "gridlink_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {}",
                escape(route),
                counter.requests
            );
            let total = durations.entry((route, method)).or_default();
            total.requests += counter.requests;
            total.micros = total.micros.saturating_add(counter.micros);
        }
        out.push_str(
            "# HELP gridlink_http_request_duration_seconds Time to answer HTTP requests, by route and method.\n\
             # TYPE gridlink_http_request_duration_seconds summary\n",
        );
        for ((route, method), counter) in durations {
            let labels = format!("route=\"{}\",method=\"{method}\"", escape(route));
            let _ = writeln!(
                out,
                "gridlink_http_request_duration_seconds_sum{{{labels}}} {:.6}\n\
                 gridlink_http_request_duration_seconds_count{{{labels}}} {}",
                counter.micros as f64 / 1e6,
                counter.requests
            );
        }
        out
    }
}

/// Standard methods by name; anything else is `other`, so clients cannot
/// grow the number of series.
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware: times the request and counts it under its route template.
pub async fn track(
    State(metrics): State<Arc<RequestMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    tracing::debug!(%method, route, status, micros = elapsed.as_micros(), "request");
    metrics.record(&route, &method, status, elapsed);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_durations_by_route() {
        let m = RequestMetrics::default();
        m.record("/health", &Method::GET, 200, Duration::from_millis(2));
        m.record("/health", &Method::GET, 200, Duration::from_millis(3));
        m.record("/health", &Method::GET, 503, Duration::from_millis(5));
        m.record(
            UNMATCHED_ROUTE,
            &Method::from_bytes(b"BREW").unwrap(),
            404,
            Duration::ZERO,
        );
        let text = m.render();
        assert!(
            text.contains(
                "gridlink_http_requests_total{route=\"/health\",method=\"GET\",status=\"200\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "gridlink_http_requests_total{route=\"/health\",method=\"GET\",status=\"503\"} 1\n"
        ));
        assert!(
            text.contains("gridlink_http_request_duration_seconds_sum{route=\"/health\",method=\"GET\"} 0.010000\n"),
            "{text}"
        );
        assert!(text.contains(
            "gridlink_http_request_duration_seconds_count{route=\"/health\",method=\"GET\"} 3\n"
        ));
        assert!(
            text.contains("{route=\"unmatched\",method=\"other\",status=\"404\"} 1\n"),
            "{text}"
        );
        assert_eq!(m.count("/health", &Method::GET, 200), 2);
    }
}
