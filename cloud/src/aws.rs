//! The AWS SDK's HTTP client for the cloud's S3 (daily export) and SNS
//! (alerts) clients: rustls with ring, like the rest of the cloud's TLS.
//! The SDK's default (`default-https-client`) would bring aws-lc, a second
//! TLS stack that complicates the static musl build.

/// A new HTTPS client for an SDK config loader
/// (`aws_config::defaults(..).http_client(aws::http_client())`).
pub fn http_client() -> aws_sdk_s3::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}
