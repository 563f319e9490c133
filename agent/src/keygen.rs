//! `gridlink-agent keygen --ven VEN_ID --out DIR`: the gateway's private key
//! and a certificate signing request, made on the gateway so the key never
//! leaves it.
//!
//! Writes `DIR/key.pem` (ECDSA P-256, PKCS#8, mode 0600, created with that
//! mode so it is never readable by others, even briefly) and `DIR/<ven>.csr`
//! (CN = the VEN id) for `gridlink-provision sign` or `aws register`. An
//! existing key is never overwritten: a gateway that already has a key
//! keeps it.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use gridlink_protocol::VenId;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    /// The key file exists: refusing to replace a gateway's identity.
    #[error(
        "{0} already exists; refusing to overwrite the gateway's key (move it away first if you really mean to replace it)"
    )]
    KeyExists(PathBuf),
    /// Key or CSR generation failed.
    #[error("key generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The files `keygen` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFiles {
    /// The private key (0600).
    pub key: PathBuf,
    /// The CSR, to hand to the installer's tool.
    pub csr: PathBuf,
}

/// Makes the key and CSR for `ven` in `out` (created if missing).
pub fn keygen(ven: &VenId, out: &Path) -> Result<KeyFiles, KeygenError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| KeygenError::Io { path, source }
    };
    fs::create_dir_all(out).map_err(io(out))?;
    let files = KeyFiles {
        key: out.join("key.pem"),
        csr: out.join(format!("{}.csr", ven.as_str())),
    };
    if files.key.exists() {
        return Err(KeygenError::KeyExists(files.key));
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, ven.as_str());
    params.distinguished_name = name;
    let csr = params.serialize_request(&key)?.pem()?;

    // The key first, created exclusively with mode 0600 and fsynced.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&files.key)
        .map_err(io(&files.key))?;
    file.write_all(key.serialize_pem().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(&files.key))?;
    fs::write(&files.csr, csr).map_err(io(&files.csr))?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn writes_a_private_key_and_a_csr_for_the_ven_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let ven = VenId::new("site-9").unwrap();
        let files = keygen(&ven, &dir.path().join("id")).unwrap();
        let mode = fs::metadata(&files.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let csr = fs::read_to_string(&files.csr).unwrap();
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        let key = fs::read_to_string(&files.key).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        assert!(matches!(
            keygen(&ven, &dir.path().join("id")),
            Err(KeygenError::KeyExists(_))
        ));
        assert_eq!(fs::read_to_string(&files.key).unwrap(), key, "untouched");

        // The installer's tool signs it, and the certificate is for this key.
        let ca = gridlink_provision::pki::CertificateAuthority::create(None).unwrap();
        let cert = ca.sign_csr(&ven, &csr).unwrap();
        let facts = gridlink_provision::pki::inspect_certificate(&cert).unwrap();
        assert_eq!(facts.common_name.as_deref(), Some("site-9"));
        assert_eq!(
            facts.public_key,
            gridlink_provision::pki::key_public_key(&key).unwrap()
        );
    }
}
