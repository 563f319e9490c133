//! `[http]`: the API server's address and answer limits.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::model::setting::bounded;

/// `[http]`: the API server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port to listen on. Default `127.0.0.1:8080` (local
    /// only; use `0.0.0.0:8080` behind a load balancer).
    /// Env `GRIDLINK_HTTP_LISTEN`.
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
    /// Most points one `/api/v1/series` or `/api/v1/network` answer may
    /// hold, 10 to 1000000; a longer range needs a larger `step`. Default
    /// 10000. Env `GRIDLINK_HTTP_MAX_POINTS`.
    #[serde(
        default = "default_max_points",
        deserialize_with = "bounded::<_, u32, 10, 1_000_000>"
    )]
    pub max_points: u32,
}

/// Default of [`HttpConfig::listen`].
pub const fn default_http_listen() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080)
}

/// Default of [`HttpConfig::max_points`].
pub const fn default_max_points() -> u32 {
    super::DEFAULT_MAX_POINTS
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_http_listen(),
            max_points: default_max_points(),
        }
    }
}
