//! Registering a gateway with the cloud (`gridlink-provision register-ven`):
//! the VEN id and the `[[loads]]` of a bundle's `agent.toml`, with the site
//! and groups the installer names, are sent to `PUT /api/v1/vens/{id}` with
//! an installer (or admin) token, so the dashboard knows the site before
//! the gateway's first reading.
//!
//! ```no_run
//! # async fn demo() -> Result<(), gridlink_provision::register::RegisterError> {
//! use std::path::Path;
//! use gridlink_provision::register::{BundleSite, CloudClient};
//!
//! let site = BundleSite::read(Path::new("bundle"))?;
//! let cloud = CloudClient::new("https://cloud.example.com", "glk_...")?;
//! let ven = cloud.register(&site, "Depot North", &["north".into()]).await?;
//! println!("{} is registered at {:?}", ven.ven_id, ven.site);
//! # Ok(()) }
//! ```
//!
//! Every failure is one [`RegisterError`] whose message is a single line
//! for the installer: the cloud unreachable, the cloud's refusal (401, 403,
//! 400: the problem document's title and detail), or a bad bundle.

use std::path::Path;
use std::time::Duration;

use gridlink_protocol::VenId;
use serde::{Deserialize, Serialize};

/// How long connecting to the cloud may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take in all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why registering failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The bundle's `agent.toml` is unreadable or lacks what is needed.
    #[error("bad bundle: {0}")]
    Bundle(String),
    /// The `--cloud` URL is not an `http://` or `https://` URL.
    #[error("invalid cloud URL {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The cloud could not be reached (refused, no route, DNS, TLS, time-out).
    #[error("cannot reach the cloud at {url}: {reason}")]
    Unreachable {
        /// The URL requested.
        url: String,
        /// The innermost cause.
        reason: String,
    },
    /// The cloud answered with an error (its problem document's text).
    #[error("the cloud refused ({status}): {title}: {detail}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The problem's `title` (or the status's reason).
        title: String,
        /// The problem's `detail` (or the body).
        detail: String,
    },
    /// The cloud's answer is not what the API documents.
    #[error("unexpected answer from the cloud: {0}")]
    Unexpected(String),
}

/// One load of the bundle's `[[loads]]`, as the cloud registers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteLoad {
    /// The load's name (`name`).
    pub name: String,
    /// Its rated power in W (`rated_power_w`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rated_power_w: Option<f64>,
    /// Whether DR may switch it: not `never_switch`.
    pub controllable: bool,
}

/// What registration takes from a bundle's `agent.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleSite {
    /// `ven_id`.
    pub ven_id: VenId,
    /// `[dr] site_meter`: the site's grid meter, the only one the cloud
    /// measures an event's response on; `None` if the bundle names none.
    pub site_meter: Option<String>,
    /// Every `[[loads]]` table, in order.
    pub loads: Vec<SiteLoad>,
}

impl BundleSite {
    /// Reads `BUNDLE/agent.toml`: `ven_id`, `[dr] site_meter` and each
    /// `[[loads]]`'s `name`, `rated_power_w` and `never_switch` (the other
    /// fields are the agent's business).
    pub fn read(bundle: &Path) -> Result<Self, RegisterError> {
        let path = bundle.join("agent.toml");
        let bad = |what: String| RegisterError::Bundle(format!("{}: {what}", path.display()));
        let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        let config: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| bad(e.message().to_owned()))?;
        let ven_id = config
            .get("ven_id")
            .and_then(toml::Value::as_str)
            .ok_or_else(|| bad("ven_id is missing or not text".into()))?;
        let ven_id = VenId::new(ven_id).map_err(|e| bad(format!("ven_id: {e}")))?;
        let site_meter = match config.get("dr") {
            None => None,
            Some(toml::Value::Table(dr)) => match dr.get("site_meter") {
                None => None,
                Some(toml::Value::String(meter)) => Some(meter.clone()),
                Some(_) => return Err(bad("dr.site_meter is not text".into())),
            },
            Some(_) => return Err(bad("dr must be a [dr] table".into())),
        };
        let tables = match config.get("loads") {
            None => &Vec::new(),
            Some(toml::Value::Array(tables)) => tables,
            Some(_) => return Err(bad("loads must be [[loads]] tables".into())),
        };
        let mut loads = Vec::with_capacity(tables.len());
        for (i, table) in tables.iter().enumerate() {
            let table = table
                .as_table()
                .ok_or_else(|| bad(format!("loads[{i}] is not a table")))?;
            let name = table
                .get("name")
                .and_then(toml::Value::as_str)
                .ok_or_else(|| bad(format!("loads[{i}].name is missing or not text")))?;
            let rated_power_w = match table.get("rated_power_w") {
                None => None,
                Some(toml::Value::Float(w)) => Some(*w),
                Some(toml::Value::Integer(w)) => Some(*w as f64),
                Some(_) => return Err(bad(format!("loads[{i}].rated_power_w is not a number"))),
            };
            let never_switch = match table.get("never_switch") {
                None => false,
                Some(toml::Value::Boolean(b)) => *b,
                Some(_) => {
                    return Err(bad(format!("loads[{i}].never_switch is not true or false")));
                }
            };
            loads.push(SiteLoad {
                name: name.to_owned(),
                rated_power_w,
                controllable: !never_switch,
            });
        }
        Ok(Self {
            ven_id,
            site_meter,
            loads,
        })
    }
}

/// The body of `PUT /api/v1/vens/{id}`.
#[derive(Debug, Serialize)]
struct RegistrationBody<'a> {
    site: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    site_meter: Option<&'a str>,
    groups: &'a [String],
    loads: &'a [SiteLoad],
}

/// The VEN as the cloud answers a registration (`RegisteredVen`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RegisteredVen {
    /// The VEN.
    pub ven_id: String,
    /// Its site.
    pub site: Option<String>,
    /// Its site meter (`None`: not registered; older clouds do not send it).
    #[serde(default)]
    pub site_meter: Option<String>,
    /// Its groups.
    pub groups: Vec<String>,
    /// Whether it is online (`None`: never heard from).
    pub online: Option<bool>,
}

/// One load as the cloud shows it (`GET /api/v1/vens/{id}/loads`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CloudLoad {
    /// The load's name.
    pub name: String,
    /// Relay state.
    pub on: bool,
    /// Power in W, if known.
    pub power_w: Option<f64>,
    /// Whether DR may switch it.
    pub controllable: bool,
}

#[derive(Debug, Deserialize)]
struct LoadList {
    loads: Vec<CloudLoad>,
}

/// An RFC 7807 problem document, as the cloud sends it.
#[derive(Debug, Default, Deserialize)]
struct Problem {
    #[serde(default)]
    title: String,
    #[serde(default)]
    detail: String,
}

/// A client of the cloud's HTTP API with a bearer token.
#[derive(Debug, Clone)]
pub struct CloudClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl CloudClient {
    /// A client for the cloud at `base` (`https://cloud.example.com`, or
    /// `http://127.0.0.1:8080`), sending `token`. TLS is rustls with the
    /// process's default crypto provider (ring is installed as the default
    /// if none is) and the operating system's roots.
    pub fn new(base: &str, token: &str) -> Result<Self, RegisterError> {
        let url = reqwest::Url::parse(base).map_err(|e| RegisterError::Url {
            url: base.to_owned(),
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(RegisterError::Url {
                url: base.to_owned(),
                reason: "expected http://HOST[:PORT] or https://HOST[:PORT]".into(),
            });
        }
        if token.trim().is_empty() {
            return Err(RegisterError::Url {
                url: base.to_owned(),
                reason: "the token is empty".into(),
            });
        }
        // reqwest without a compiled-in provider panics when none is the
        // process default; the CLI installs ring at start.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("gridlink-provision/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegisterError::Unexpected(innermost(&e)))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
        })
    }

    /// Registers the bundle's VEN, site meter and loads at `site`, in
    /// `groups` (`PUT /api/v1/vens/{id}`). Idempotent.
    pub async fn register(
        &self,
        bundle: &BundleSite,
        site: &str,
        groups: &[String],
    ) -> Result<RegisteredVen, RegisterError> {
        let url = format!("{}/api/v1/vens/{}", self.base, bundle.ven_id);
        let body = RegistrationBody {
            site,
            site_meter: bundle.site_meter.as_deref(),
            groups,
            loads: &bundle.loads,
        };
        let request = self.http.put(&url).bearer_auth(&self.token).json(&body);
        self.send(&url, request).await
    }

    /// The VEN's loads as the cloud shows them (`GET /api/v1/vens/{id}/loads`).
    pub async fn loads(&self, ven_id: &VenId) -> Result<Vec<CloudLoad>, RegisterError> {
        let url = format!("{}/api/v1/vens/{ven_id}/loads", self.base);
        let request = self.http.get(&url).bearer_auth(&self.token);
        let list: LoadList = self.send(&url, request).await?;
        Ok(list.loads)
    }

    async fn send<T: for<'de> Deserialize<'de>>(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, RegisterError> {
        let response = request
            .send()
            .await
            .map_err(|e| RegisterError::Unreachable {
                url: url.to_owned(),
                reason: innermost(&e),
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| RegisterError::Unreachable {
                url: url.to_owned(),
                reason: innermost(&e),
            })?;
        if !status.is_success() {
            let problem: Problem = serde_json::from_slice(&bytes).unwrap_or_default();
            let title = if problem.title.is_empty() {
                status.canonical_reason().unwrap_or("error").to_owned()
            } else {
                problem.title
            };
            let detail = if problem.detail.is_empty() {
                one_line(&String::from_utf8_lossy(&bytes))
            } else {
                one_line(&problem.detail)
            };
            return Err(RegisterError::Refused {
                status: status.as_u16(),
                title,
                detail,
            });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| RegisterError::Unexpected(format!("{url} answered {status} with {e}")))
    }
}

/// The innermost cause of an error ("Connection refused (os error 111)"),
/// with the outer message when it adds the kind (time-out).
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let text = one_line(&cause.to_string());
    match error.downcast_ref::<reqwest::Error>() {
        Some(e) if e.is_timeout() => format!("timed out ({text})"),
        _ => text,
    }
}

/// `text` on one line, at most 300 characters.
fn one_line(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    line.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(agent_toml: &str) -> (tempfile::TempDir, Result<BundleSite, RegisterError>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("agent.toml"), agent_toml).unwrap();
        let site = BundleSite::read(dir.path());
        (dir, site)
    }

    #[test]
    fn reads_the_ven_and_its_loads() {
        let (_dir, site) = bundle(
            "ven_id = \"depot-1\"\n[mqtt]\nhost = \"x\"\n\
             [[loads]]\nname = \"hvac\"\nrated_power_w = 3000.0\nunit_id = 1\n\
             [[loads]]\nname = \"freezer\"\nrated_power_w = 800\nnever_switch = true\n\
             [dr]\nsite_meter = \"main\"\n",
        );
        let site = site.unwrap();
        assert_eq!(site.ven_id.as_str(), "depot-1");
        assert_eq!(site.site_meter.as_deref(), Some("main"));
        assert_eq!(
            site.loads,
            [
                SiteLoad {
                    name: "hvac".into(),
                    rated_power_w: Some(3000.0),
                    controllable: true
                },
                SiteLoad {
                    name: "freezer".into(),
                    rated_power_w: Some(800.0),
                    controllable: false
                },
            ]
        );
        let (_dir, site) = bundle("ven_id = \"depot-1\"\n");
        let site = site.unwrap();
        assert!(site.loads.is_empty());
        assert_eq!(site.site_meter, None);
    }

    #[test]
    fn bad_bundles_name_the_problem() {
        for (text, expected) in [
            ("", "ven_id is missing"),
            ("ven_id = \"a b\"", "ven_id: "),
            ("ven_id = \"v\"\ndr = 1", "dr must be a [dr] table"),
            (
                "ven_id = \"v\"\n[dr]\nsite_meter = 1",
                "dr.site_meter is not text",
            ),
            ("ven_id = [", "agent.toml: "),
            (
                "ven_id = \"v\"\nloads = 3",
                "loads must be [[loads]] tables",
            ),
            (
                "ven_id = \"v\"\n[[loads]]\nrated_power_w = 1.0",
                "loads[0].name is missing",
            ),
            (
                "ven_id = \"v\"\n[[loads]]\nname = \"a\"\nrated_power_w = \"big\"",
                "loads[0].rated_power_w is not a number",
            ),
            (
                "ven_id = \"v\"\n[[loads]]\nname = \"a\"\nnever_switch = 1",
                "loads[0].never_switch",
            ),
        ] {
            let (_dir, site) = bundle(text);
            let error = site.unwrap_err().to_string();
            assert!(error.starts_with("bad bundle: "), "{error}");
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
        let missing = BundleSite::read(Path::new("/nonexistent/bundle")).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("/nonexistent/bundle/agent.toml")
        );
    }

    #[test]
    fn cloud_urls_are_checked() {
        for url in ["cloud.example.com", "ftp://x", "http://", ""] {
            assert!(
                matches!(CloudClient::new(url, "t"), Err(RegisterError::Url { .. })),
                "{url}"
            );
        }
        assert!(CloudClient::new("https://cloud.example.com/", "t").is_ok());
        assert!(CloudClient::new("http://127.0.0.1:8080", " ").is_err());
    }
}
