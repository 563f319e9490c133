//! Callback URLs: the policy every request to a subscriber's URL follows
//! (the echo challenge and each delivery), and the OpenADR 3.1 echo
//! challenge itself ([`verify_callback`]).
//!
//! The policy: `https://` only unless `allow_http`; and unless
//! `allow_private`, the host must not be, or resolve to, an address a
//! subscriber has no business making the VTN call (loopback, private,
//! shared, link-local, unique-local, multicast, unspecified, reserved;
//! IPv4-mapped, IPv4-compatible, NAT64 and 6to4 IPv6 addresses are judged
//! by the IPv4 address they carry). Every resolved address is checked,
//! and the HTTP client resolves through that check ([`GuardedResolver`]),
//! so the address connected to is always one that was checked: a DNS
//! answer that changes between a check and the connection (DNS
//! rebinding) cannot slip through. Redirects are never followed.
//!
//! ```
//! use std::net::IpAddr;
//! use gridlink_cloud::notify::callback::forbidden_address;
//!
//! assert_eq!(forbidden_address("10.1.2.3".parse().unwrap()), Some("private"));
//! assert_eq!(forbidden_address("::ffff:127.0.0.1".parse().unwrap()), Some("loopback"));
//! assert_eq!(forbidden_address("93.184.215.14".parse::<IpAddr>().unwrap()), None);
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use ring::rand::SecureRandom as _;

use super::NotifyConfig;

/// Longest echo answer read, bytes.
const MAX_ECHO_BODY: usize = 4096;

/// Why a callback URL was refused or a request to it failed; the text
/// says exactly why (it is the `detail` of a 400 problem, and a
/// delivery's stored `last_error`).
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// Not an absolute URL.
    #[error("callbackUrl is not a valid URL: {0}")]
    InvalidUrl(String),
    /// A scheme other than https (or http where allowed).
    #[error("callbackUrl scheme {scheme:?} is not allowed: use {allowed}")]
    Scheme {
        /// The URL's scheme.
        scheme: String,
        /// What is allowed.
        allowed: &'static str,
    },
    /// No host.
    #[error("callbackUrl has no host")]
    NoHost,
    /// The host is, or resolves to, a refused address.
    #[error("callbackUrl host {host} {how} {address}, a {class} address, which is not allowed")]
    ForbiddenAddress {
        /// The URL's host.
        host: String,
        /// `is` (a literal) or `resolves to`.
        how: &'static str,
        /// The refused address.
        address: IpAddr,
        /// Its class (`loopback`, `private`, ...).
        class: &'static str,
    },
    /// The host name does not resolve.
    #[error("callbackUrl host {host} does not resolve: {reason}")]
    Resolve {
        /// The host.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// No answer within the time-out.
    #[error("callbackUrl did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The request failed (connection refused, TLS, reset).
    #[error("request to callbackUrl failed: {0}")]
    Request(String),
    /// A redirect, which is not followed.
    #[error("callbackUrl answered {status} (a redirect{location}), which is not followed")]
    Redirect {
        /// The status.
        status: reqwest::StatusCode,
        /// `: to <Location>` when given.
        location: String,
    },
    /// A status other than 2xx.
    #[error("callbackUrl answered {0}")]
    Status(reqwest::StatusCode),
    /// The echo challenge's answer was not the echo value.
    #[error("callbackUrl did not return the echo challenge value (answered {answer:?})")]
    EchoMismatch {
        /// The start of what it answered.
        answer: String,
    },
    /// The system's random generator failed.
    #[error("cannot make an echo challenge: no randomness")]
    Random,
}

/// Why `ip` may not be called without `allow_private`, or `None` for a
/// public address.
pub fn forbidden_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() || a >= 240 {
        Some("reserved")
    } else if a == 192 && b == 0 && ip.octets()[2] == 0 {
        Some("IETF protocol assignment")
    } else if a == 198 && (18..20).contains(&b) {
        Some("benchmarking")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // IPv4-compatible (::a.b.c.d, deprecated) and NAT64 (64:ff9b::/96).
    if s[..6] == [0; 6] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return forbidden_v4(embedded(s[6], s[7])).or(Some("IPv4-embedding"));
    }
    // 6to4 (2002::/16) carries its IPv4 address in bits 16..48.
    if s[0] == 0x2002
        && let Some(class) = forbidden_v4(embedded(s[1], s[2]))
    {
        return Some(class);
    }
    if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_unicast_link_local() {
        Some("link-local")
    } else if ip.is_unique_local() {
        Some("unique-local")
    } else if s[0] & 0xffc0 == 0xfec0 {
        Some("site-local")
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        Some("documentation")
    } else {
        None
    }
}

/// Parses `url` and applies the scheme rule, and the address rule to a
/// literal IP host (a host name is checked when it is resolved).
pub fn check_url(config: &NotifyConfig, url: &str) -> Result<Url, CallbackError> {
    let parsed = Url::parse(url).map_err(|e| CallbackError::InvalidUrl(e.to_string()))?;
    match parsed.scheme() {
        "https" => {}
        "http" if config.allow_http => {}
        scheme => {
            return Err(CallbackError::Scheme {
                scheme: scheme.to_owned(),
                allowed: if config.allow_http {
                    "https or http"
                } else {
                    "https"
                },
            });
        }
    }
    let host = parsed.host_str().ok_or(CallbackError::NoHost)?;
    if host.is_empty() {
        return Err(CallbackError::NoHost);
    }
    let literal = literal_ip(host);
    if let Some(address) = literal
        && !config.allow_private
        && let Some(class) = forbidden_address(address)
    {
        return Err(CallbackError::ForbiddenAddress {
            host: host.to_owned(),
            how: "is",
            address,
            class,
        });
    }
    Ok(parsed)
}

/// The IP address a URL's host is written as (`[..]` around IPv6), if it
/// is one.
fn literal_ip(host: &str) -> Option<IpAddr> {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .parse()
        .ok()
}

/// Every address of `host`, all checked unless `allow_private`.
pub async fn resolve_checked(
    host: &str,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, CallbackError> {
    let resolve_error = |reason: String| CallbackError::Resolve {
        host: host.to_owned(),
        reason,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| resolve_error(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(resolve_error("no address".into()));
    }
    if !allow_private {
        for addr in &addrs {
            if let Some(class) = forbidden_address(addr.ip()) {
                return Err(CallbackError::ForbiddenAddress {
                    host: host.to_owned(),
                    how: "resolves to",
                    address: addr.ip(),
                    class,
                });
            }
        }
    }
    Ok(addrs)
}

/// The HTTP client's resolver: [`resolve_checked`], so a connection only
/// ever goes to an address that passed the policy when it was resolved.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    /// Skip the address rule.
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs = resolve_checked(name.as_str(), allow_private).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The HTTP client of every callback request: the [`GuardedResolver`], no
/// redirects, no proxy, the time-out, rustls with ring.
pub fn http_client(config: &NotifyConfig) -> Result<reqwest::Client, reqwest::Error> {
    // reqwest is built without a compiled-in provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver {
            allow_private: config.allow_private,
        }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(config.timeout())
        .connect_timeout(config.timeout())
        .user_agent(concat!("gridlink-cloud/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A failed request's error, with the policy's refusal when that is the
/// cause (the resolver's error travels in the source chain).
pub(crate) fn request_error(config: &NotifyConfig, error: &reqwest::Error) -> CallbackError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut chain = Vec::new();
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<CallbackError>() {
            return match refused {
                CallbackError::ForbiddenAddress {
                    host,
                    how,
                    address,
                    class,
                } => CallbackError::ForbiddenAddress {
                    host: host.clone(),
                    how,
                    address: *address,
                    class,
                },
                CallbackError::Resolve { host, reason } => CallbackError::Resolve {
                    host: host.clone(),
                    reason: reason.clone(),
                },
                other => CallbackError::Request(other.to_string()),
            };
        }
        let text = e.to_string();
        if chain.last() != Some(&text) {
            chain.push(text);
        }
        source = e.source();
    }
    if error.is_timeout() {
        return CallbackError::Timeout(config.timeout());
    }
    CallbackError::Request(chain.join(": "))
}

/// A 3xx as the error it is (redirects are not followed), else the
/// status as an error for anything but 2xx.
pub(crate) fn status_error(response: &reqwest::Response) -> Option<CallbackError> {
    let status = response.status();
    if status.is_success() {
        None
    } else if status.is_redirection() {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(|l| format!(": to {}", l.chars().take(200).collect::<String>()))
            .unwrap_or_default();
        Some(CallbackError::Redirect { status, location })
    } else {
        Some(CallbackError::Status(status))
    }
}

/// A fresh echo value: 128 random bits, hex.
fn echo_value() -> Result<String, CallbackError> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CallbackError::Random)?;
    Ok(bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// Whether `body` answers the challenge `echo`: the value itself (white
/// space around it ignored), or a JSON string of it.
pub fn echo_matches(body: &str, echo: &str) -> bool {
    let body = body.trim();
    body == echo || serde_json::from_str::<String>(body).is_ok_and(|s| s.trim() == echo)
}

/// The OpenADR 3.1 callback check (Definition.md, "Subscriptions"): the
/// URL passes the policy ([`check_url`]; a host name's every address is
/// checked), then `GET <callbackUrl>?echo=<random>` (the URL's own query
/// kept) with no redirects and the time-out must answer 2xx with the
/// echo value as its body (trimmed; a JSON string of it is accepted).
pub async fn verify_callback(config: &NotifyConfig, url: &str) -> Result<(), CallbackError> {
    let mut parsed = check_url(config, url)?;
    let host = parsed.host_str().unwrap_or_default().to_owned();
    if literal_ip(&host).is_none() {
        // For the precise error; the client's resolver checks again when
        // it connects.
        resolve_checked(&host, config.allow_private).await?;
    }
    let echo = echo_value()?;
    parsed.query_pairs_mut().append_pair("echo", &echo);
    let client = http_client(config).map_err(|e| CallbackError::Request(e.to_string()))?;
    let mut response = client
        .get(parsed)
        .send()
        .await
        .map_err(|e| request_error(config, &e))?;
    if let Some(error) = status_error(&response) {
        return Err(error);
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_ECHO_BODY {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => return Err(request_error(config, &e)),
        }
    }
    let body = String::from_utf8_lossy(&body);
    if echo_matches(&body, &echo) {
        Ok(())
    } else {
        Err(CallbackError::EchoMismatch {
            answer: body.chars().take(64).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(ip: &str) -> Option<&'static str> {
        forbidden_address(ip.parse().unwrap())
    }

    #[test]
    fn classifies_ipv4() {
        for (ip, expected) in [
            ("127.0.0.1", Some("loopback")),
            ("127.255.0.9", Some("loopback")),
            ("10.0.0.1", Some("private")),
            ("172.16.5.4", Some("private")),
            ("172.31.255.255", Some("private")),
            ("192.168.1.1", Some("private")),
            ("169.254.169.254", Some("link-local")),
            ("100.64.0.1", Some("shared (carrier-grade NAT)")),
            ("0.0.0.0", Some("unspecified")),
            ("0.1.2.3", Some("unspecified")),
            ("224.0.0.1", Some("multicast")),
            ("255.255.255.255", Some("reserved")),
            ("240.0.0.1", Some("reserved")),
            ("172.32.0.1", None),
            ("100.128.0.1", None),
            ("8.8.8.8", None),
            ("93.184.215.14", None),
        ] {
            assert_eq!(class(ip), expected, "{ip}");
        }
    }

    #[test]
    fn classifies_ipv6_and_embedded_ipv4() {
        for (ip, expected) in [
            ("::1", Some("loopback")),
            ("::", Some("unspecified")),
            ("fe80::1", Some("link-local")),
            ("fc00::1", Some("unique-local")),
            ("fd12:3456::1", Some("unique-local")),
            ("ff02::1", Some("multicast")),
            ("fec0::1", Some("site-local")),
            ("2001:db8::1", Some("documentation")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:10.1.1.1", Some("private")),
            ("::ffff:169.254.1.1", Some("link-local")),
            ("::127.0.0.1", Some("loopback")),
            ("::8.8.8.8", Some("IPv4-embedding")),
            ("64:ff9b::10.0.0.1", Some("private")),
            ("2002:7f00:1::1", Some("loopback")),
            ("::ffff:8.8.8.8", None),
            ("2002:808:808::1", None),
            ("2606:4700:4700::1111", None),
        ] {
            assert_eq!(class(ip), expected, "{ip}");
        }
    }

    #[test]
    fn url_rules() {
        let strict = NotifyConfig::default();
        let open = NotifyConfig {
            allow_http: true,
            allow_private: true,
            ..NotifyConfig::default()
        };
        assert_eq!(
            check_url(&strict, "http://ven.example.com/cb")
                .unwrap_err()
                .to_string(),
            "callbackUrl scheme \"http\" is not allowed: use https"
        );
        assert!(check_url(&open, "http://127.0.0.1:9/cb").is_ok());
        assert!(check_url(&strict, "https://ven.example.com/cb?a=1").is_ok());
        assert_eq!(
            check_url(&strict, "https://[::1]/cb")
                .unwrap_err()
                .to_string(),
            "callbackUrl host [::1] is ::1, a loopback address, which is not allowed"
        );
        assert_eq!(
            check_url(&strict, "https://10.0.0.7/cb")
                .unwrap_err()
                .to_string(),
            "callbackUrl host 10.0.0.7 is 10.0.0.7, a private address, which is not allowed"
        );
        assert!(matches!(
            check_url(&strict, "ftp://x/"),
            Err(CallbackError::Scheme { .. })
        ));
        assert!(matches!(
            check_url(&strict, "not a url"),
            Err(CallbackError::InvalidUrl(_))
        ));
    }

    #[test]
    fn echo_answers() {
        assert!(echo_matches("abc\n", "abc"));
        assert!(echo_matches(" \"abc\" ", "abc"));
        assert!(!echo_matches("abcd", "abc"));
        assert!(!echo_matches("", "abc"));
        let a = echo_value().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, echo_value().unwrap());
    }
}
