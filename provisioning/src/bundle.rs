//! The bundle directory a gateway runs from unchanged:
//!
//! ```text
//! BUNDLE/cert.pem     the VEN's client certificate
//! BUNDLE/ca.pem       what the agent trusts for the broker (own CA or Amazon's root)
//! BUNDLE/key.pem      only when the key was not made on the gateway (mode 0600)
//! BUNDLE/agent.toml   ven_id and the broker endpoint filled in; devices to add
//! ```
//!
//! A bundle is written into a temporary sibling directory and renamed into
//! place, so an interrupted run leaves nothing half-written, and an
//! existing bundle is never overwritten.

use std::fs;
use std::path::{Path, PathBuf};

use gridlink_protocol::VenId;

use crate::ca_dir::{CaDirError, write_new};

/// Where the agent connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address of the broker.
    pub host: String,
    /// Port: 8883 for MQTT over TLS (443 with ALPN on AWS).
    pub port: u16,
}

impl std::str::FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse()
                    .map_err(|_| format!("{p:?} is not a port number (1-65535)"))?,
            ),
            None => (s, 8883),
        };
        if host.is_empty() || port == 0 {
            return Err(format!("{s:?} is not HOST[:PORT]"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

/// What goes into a bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The VEN.
    pub ven: VenId,
    /// Its certificate (PEM).
    pub cert_pem: String,
    /// The broker's CA (PEM).
    pub ca_pem: String,
    /// Its private key, only when made off the gateway (PEM).
    pub key_pem: Option<String>,
    /// The broker.
    pub endpoint: Endpoint,
}

impl Bundle {
    /// Writes the bundle to `out`, which must not exist. Returns the files
    /// written.
    pub fn write(&self, out: &Path) -> Result<Vec<PathBuf>, CaDirError> {
        if out.exists() {
            return Err(CaDirError::Io {
                path: out.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "already exists; refusing to overwrite a bundle",
                ),
            });
        }
        let name = out
            .file_name()
            .map_or_else(|| "bundle".into(), |n| n.to_string_lossy().into_owned());
        let tmp = out.with_file_name(format!(".{name}.partial-{}", std::process::id()));
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| CaDirError::Io { path, source }
        };
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let result = (|| {
            write_new(&tmp.join("cert.pem"), &self.cert_pem, 0o644)?;
            write_new(&tmp.join("ca.pem"), &self.ca_pem, 0o644)?;
            if let Some(key) = &self.key_pem {
                write_new(&tmp.join("key.pem"), key, 0o600)?;
            }
            write_new(&tmp.join("agent.toml"), &self.agent_toml(), 0o644)?;
            fs::File::open(&tmp)
                .and_then(|d| d.sync_all())
                .map_err(io(&tmp))?;
            fs::rename(&tmp, out).map_err(io(out))
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result?;
        let mut files = vec![out.join("cert.pem"), out.join("ca.pem")];
        if self.key_pem.is_some() {
            files.push(out.join("key.pem"));
        }
        files.push(out.join("agent.toml"));
        Ok(files)
    }

    /// The agent configuration: identity and broker filled in, the rest
    /// at the defaults documented in agent/README.md.
    pub fn agent_toml(&self) -> String {
        let key_note = if self.key_pem.is_some() {
            "# key.pem was made off the gateway (gridlink-provision issue): bench use only."
        } else {
            "# key.pem was made on this gateway by `gridlink-agent keygen`; it never left it."
        };
        format!(
            "# gridlink agent configuration, written by gridlink-provision for {ven}.\n\
             # Add the site's [[devices]] (and [dr], [[loads]]); every field is documented in\n\
             # agent/README.md. Check with `gridlink-agent check --config agent.toml`.\n\
             \n\
             ven_id = \"{ven}\"\n\
             \n\
             [mqtt]\n\
             host = \"{host}\"\n\
             port = {port}\n\
             alpn = {alpn}\n\
             ca = \"ca.pem\"\n\
             cert = \"cert.pem\"\n\
             {key_note}\n\
             key = \"key.pem\"\n\
             \n\
             [buffer]\n\
             path = \"/var/lib/gridlink/buffer\"\n\
             max_bytes = 268435456\n",
            ven = self.ven,
            host = self.endpoint.host,
            port = self.endpoint.port,
            alpn = self.endpoint.port == 443,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let e: Endpoint = "broker.example.com".parse().unwrap();
        assert_eq!((e.host.as_str(), e.port), ("broker.example.com", 8883));
        let e: Endpoint = "10.0.0.5:1883".parse().unwrap();
        assert_eq!(e.port, 1883);
        assert!("host:0".parse::<Endpoint>().is_err());
        assert!("host:x".parse::<Endpoint>().unwrap_err().contains("port"));
    }

    #[test]
    fn write_refuses_an_existing_bundle_and_leaves_no_partial_directory() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = Bundle {
            ven: VenId::new("v1").unwrap(),
            cert_pem: "c".into(),
            ca_pem: "a".into(),
            key_pem: Some("k".into()),
            endpoint: "127.0.0.1:8883".parse().unwrap(),
        };
        let out = dir.path().join("b");
        let files = bundle.write(&out).unwrap();
        assert_eq!(files.len(), 4);
        assert!(bundle.write(&out).is_err());
        let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "no partial directory left behind");
        let toml = fs::read_to_string(out.join("agent.toml")).unwrap();
        assert!(toml.contains("ven_id = \"v1\""));
        assert!(toml.contains("host = \"127.0.0.1\""));
    }
}
