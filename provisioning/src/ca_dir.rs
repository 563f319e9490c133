//! The CA directory of `gridlink-provision ca init`: the CA certificate and
//! key, an index of what it issued and revoked, and the CRL that Mosquitto
//! reads (`crlfile`).
//!
//! ```text
//! DIR/ca.pem        the CA certificate (what brokers and agents trust)
//! DIR/ca.key        its private key, mode 0600
//! DIR/index.json    every certificate issued: serial, VEN, expiry, revocation
//! DIR/crl.pem       the revocation list, rewritten by every `revoke`
//! ```
//!
//! Every file is written to a temporary name, fsynced and renamed, so a
//! crash never leaves a half-written index or CRL.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use gridlink_protocol::VenId;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::pki::{self, CertificateAuthority, IssuedCertificate, PkiError};

/// How long a CRL is valid: Mosquitto refuses every client once the CRL it
/// holds is past `nextUpdate`, so `revoke` (or `crl refresh`) must run
/// again before then.
pub const CRL_VALIDITY: Duration = Duration::days(365);

/// What can go wrong with a CA directory.
#[derive(Debug, thiserror::Error)]
pub enum CaDirError {
    /// `init` found a CA already there.
    #[error("{0} already holds a CA (ca.pem or ca.key exists); refusing to overwrite it")]
    Exists(PathBuf),
    /// The directory or one of its files is missing.
    #[error("{path} is not a gridlink CA directory: {reason} (create one with `gridlink-provision ca init --dir {path}`)", path = .0.display(), reason = .1)]
    NotACaDir(PathBuf, String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `index.json` is not what this tool writes.
    #[error("{path}: {reason}")]
    BadIndex {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A certificate operation failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// `revoke` found no unrevoked certificate for the VEN.
    #[error("the CA issued no unrevoked certificate for {0}")]
    NothingToRevoke(String),
}

/// One certificate in `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Serial number, lower-case hex.
    pub serial: String,
    /// The VEN (certificate CN).
    pub ven: String,
    /// When it was issued (RFC 3339).
    pub issued_at: String,
    /// When it expires (RFC 3339).
    pub not_after: String,
    /// When it was revoked (RFC 3339), if it was.
    pub revoked_at: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Index {
    crl_number: u64,
    certificates: Vec<IndexEntry>,
}

/// An opened CA directory.
#[derive(Debug)]
pub struct CaDir {
    dir: PathBuf,
    ca: CertificateAuthority,
    index: Index,
}

impl CaDir {
    /// Creates a CA in `dir` (made if missing), with an empty CRL. Refuses
    /// if a CA is already there.
    pub fn init(dir: &Path, common_name: Option<&str>) -> Result<Self, CaDirError> {
        if dir.join("ca.pem").exists() || dir.join("ca.key").exists() {
            return Err(CaDirError::Exists(dir.to_owned()));
        }
        fs::create_dir_all(dir).map_err(|source| CaDirError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let ca = CertificateAuthority::create(common_name)?;
        let this = Self {
            dir: dir.to_owned(),
            ca,
            index: Index::default(),
        };
        // Key first, created exclusively: two `init`s racing cannot both win.
        write_new(&this.dir.join("ca.key"), &this.ca.key_pem(), 0o600)?;
        write_atomic(&this.dir.join("ca.pem"), this.ca.cert_pem(), 0o644)?;
        this.write_crl()?;
        Ok(this)
    }

    /// Opens the CA in `dir`.
    pub fn open(dir: &Path) -> Result<Self, CaDirError> {
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read_to_string(&path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    CaDirError::NotACaDir(dir.to_owned(), format!("{name} is missing"))
                } else {
                    CaDirError::Io { path, source: e }
                }
            })
        };
        let cert = read("ca.pem")?;
        let key = read("ca.key")?;
        let ca = CertificateAuthority::from_pem(&cert, &key)?;
        let index_path = dir.join("index.json");
        let index = match fs::read_to_string(&index_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| CaDirError::BadIndex {
                path: index_path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Index::default(),
            Err(source) => {
                return Err(CaDirError::Io {
                    path: index_path,
                    source,
                });
            }
        };
        Ok(Self {
            dir: dir.to_owned(),
            ca,
            index,
        })
    }

    /// The CA.
    pub fn ca(&self) -> &CertificateAuthority {
        &self.ca
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the CRL file (Mosquitto's `crlfile`).
    pub fn crl_path(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }

    /// Every certificate issued, oldest first.
    pub fn issued(&self) -> &[IndexEntry] {
        &self.index.certificates
    }

    /// Signs a CSR made on the gateway for `days`, recording it. The VEN is
    /// the CSR's CN, which must be a valid VEN id. Returns the VEN and the
    /// certificate (PEM).
    pub fn sign_csr(&mut self, csr_pem: &str, days: u32) -> Result<(VenId, String), CaDirError> {
        let cn = pki::csr_common_name(csr_pem)?.ok_or(PkiError::InvalidCsr(
            rcgen::Error::CouldNotParseCertificationRequest,
        ))?;
        let ven = VenId::new(cn.clone()).map_err(|e| PkiError::CsrSubjectMismatch {
            expected: format!("a valid VEN id ({e})"),
            found: cn,
        })?;
        let cert = self
            .ca
            .sign_csr_for(&ven, csr_pem, Duration::days(i64::from(days)))?;
        self.record(&ven, &cert)?;
        Ok((ven, cert))
    }

    /// Issues a certificate and a new key for `ven` (bench setups), valid
    /// for `days`, recording it.
    pub fn issue(&mut self, ven: &VenId, days: u32) -> Result<IssuedCertificate, CaDirError> {
        let issued = self
            .ca
            .issue_ven_for(ven, Duration::days(i64::from(days)))?;
        self.record(ven, &issued.cert_pem)?;
        Ok(issued)
    }

    /// Revokes every unrevoked certificate of `ven` and rewrites the CRL.
    /// Returns how many were revoked.
    pub fn revoke(&mut self, ven: &VenId) -> Result<usize, CaDirError> {
        let now = now_text();
        let mut count = 0;
        for entry in &mut self.index.certificates {
            if entry.ven == ven.as_str() && entry.revoked_at.is_none() {
                entry.revoked_at = Some(now.clone());
                count += 1;
            }
        }
        if count == 0 {
            return Err(CaDirError::NothingToRevoke(ven.as_str().to_owned()));
        }
        self.index.crl_number += 1;
        self.write_index()?;
        self.write_crl()?;
        Ok(count)
    }

    /// Writes a fresh CRL (new number, validity from now), e.g. before the
    /// old one's `nextUpdate`.
    pub fn refresh_crl(&mut self) -> Result<(), CaDirError> {
        self.index.crl_number += 1;
        self.write_index()?;
        self.write_crl()
    }

    fn record(&mut self, ven: &VenId, cert_pem: &str) -> Result<(), CaDirError> {
        let facts = pki::inspect_certificate(cert_pem)?;
        self.index.certificates.push(IndexEntry {
            serial: hex(&facts.serial),
            ven: ven.as_str().to_owned(),
            issued_at: now_text(),
            not_after: facts.not_after.format(&Rfc3339).unwrap_or_default(),
            revoked_at: None,
        });
        self.write_index()
    }

    fn write_index(&self) -> Result<(), CaDirError> {
        let path = self.dir.join("index.json");
        let text = serde_json::to_string_pretty(&self.index).map_err(|e| CaDirError::BadIndex {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &text, 0o644)
    }

    fn write_crl(&self) -> Result<(), CaDirError> {
        let revoked: Vec<(Vec<u8>, OffsetDateTime)> = self
            .index
            .certificates
            .iter()
            .filter_map(|e| {
                let at = OffsetDateTime::parse(e.revoked_at.as_deref()?, &Rfc3339).ok()?;
                Some((unhex(&e.serial)?, at))
            })
            .collect();
        let pem = self.ca.crl(
            &revoked,
            self.index.crl_number,
            OffsetDateTime::now_utc() + CRL_VALIDITY,
        )?;
        write_atomic(&self.crl_path(), &pem, 0o644)
    }
}

fn now_text() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Writes `contents` to `path` through a temporary file in the same
/// directory, fsynced, then renamed over `path`, so readers see the old or
/// the new file, never a part.
pub fn write_atomic(path: &Path, contents: &str, mode: u32) -> Result<(), CaDirError> {
    let io = |source| CaDirError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

/// Writes a new file that must not exist yet (`O_EXCL`), fsynced.
pub fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), CaDirError> {
    let io = |source| CaDirError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn init_refuses_to_overwrite_and_open_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let ca = CaDir::init(&ca_dir, None).unwrap();
        let mode = fs::metadata(ca_dir.join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(
            CaDir::init(&ca_dir, None),
            Err(CaDirError::Exists(_))
        ));
        let opened = CaDir::open(&ca_dir).unwrap();
        assert_eq!(opened.ca().cert_pem(), ca.ca().cert_pem());
        let missing = CaDir::open(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("ca.pem is missing"), "{missing}");
    }

    #[test]
    fn sign_records_and_revoke_lists_the_serial_in_the_crl() {
        let dir = tempfile::tempdir().unwrap();
        let mut ca = CaDir::init(dir.path(), None).unwrap();
        let ven = VenId::new("site-7").unwrap();
        let csr = pki::generate_csr(&ven).unwrap();
        let (signed_for, cert) = ca.sign_csr(&csr.csr_pem, 30).unwrap();
        assert_eq!(signed_for, ven);
        let facts = pki::inspect_certificate(&cert).unwrap();
        let days = (facts.not_after - OffsetDateTime::now_utc()).whole_days();
        assert!((29..=30).contains(&days), "{days}");
        assert_eq!(facts.public_key, pki::key_public_key(&csr.key_pem).unwrap());

        let count = CaDir::open(dir.path()).unwrap().revoke(&ven).unwrap();
        assert_eq!(count, 1);
        let reopened = CaDir::open(dir.path()).unwrap();
        assert!(reopened.issued()[0].revoked_at.is_some());
        let crl = fs::read_to_string(reopened.crl_path()).unwrap();
        let der = x509_parser::pem::parse_x509_pem(crl.as_bytes())
            .unwrap()
            .1
            .contents;
        let (_, parsed) =
            <x509_parser::revocation_list::CertificateRevocationList as x509_parser::prelude::FromDer<_>>::from_der(&der).unwrap();
        let serials: Vec<Vec<u8>> = parsed
            .iter_revoked_certificates()
            .map(|r| r.raw_serial().to_vec())
            .collect();
        assert_eq!(serials, vec![facts.serial]);
        assert!(matches!(
            CaDir::open(dir.path()).unwrap().revoke(&ven),
            Err(CaDirError::NothingToRevoke(_))
        ));
    }

    #[test]
    fn a_csr_whose_cn_is_not_a_ven_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut ca = CaDir::init(dir.path(), None).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "not a ven/id");
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let err = ca.sign_csr(&csr, 30).unwrap_err().to_string();
        assert!(err.contains("valid VEN id"), "{err}");
        let err = ca.sign_csr("garbage", 30).unwrap_err().to_string();
        assert!(
            err.contains("certificate signing request rejected"),
            "{err}"
        );
        assert!(ca.issued().is_empty());
    }
}
