//! Own certificate authority: the CA itself, server certificates for the
//! broker, client certificates whose CN is the VEN id, and CSR signing.
//!
//! All keys are ECDSA P-256 made with ring. Client certificates are what
//! Mosquitto (`use_identity_as_username`) and AWS IoT (the thing name) use to
//! authorise a connection, so the CN of a VEN certificate is always its
//! [`VenId`], and the CN [`BACKEND_IDENTITY`] is reserved for the cloud.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use gridlink_protocol::VenId;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams,
    CertificateSigningRequestParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose,
    IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    PublicKeyData as _, RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use ring::rand::{SecureRandom as _, SystemRandom};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer as _, X509Certificate};

/// Common name of a CA made by [`CertificateAuthority::create`] without a name.
pub const DEFAULT_CA_NAME: &str = "gridlink CA";

/// Client identity (certificate CN and so MQTT user name) of the cloud
/// backend. The broker ACL grants it read on every VEN's uplink topics and
/// write on every `ven/cmd/+`, so no VEN may ever be issued this CN.
pub const BACKEND_IDENTITY: &str = "backend";

/// Names a server certificate covers unless told otherwise: a broker on the
/// loopback interface, as tests and the demo run it.
pub const DEFAULT_SERVER_NAMES: &[&str] = &["127.0.0.1", "localhost"];

/// How long a CA certificate is valid.
pub const CA_VALIDITY: Duration = Duration::days(20 * 365);

/// How long a server or client certificate is valid (never past its CA's
/// own expiry). There is no renewal flow yet; a compromised device is revoked.
pub const LEAF_VALIDITY: Duration = Duration::days(10 * 365);

/// Back-dating of `notBefore`, so a gateway whose clock lags a little still
/// accepts a certificate issued a moment ago.
const CLOCK_SKEW: Duration = Duration::hours(1);

/// What went wrong while creating, loading or using a CA.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen could not generate a key or build and sign a certificate.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// The CA certificate PEM is not a parsable X.509 certificate.
    #[error("CA certificate cannot be parsed: {0}")]
    InvalidCaCertificate(String),
    /// The certificate given as CA is not marked as a CA (basic constraints).
    #[error(
        "certificate {subject:?} is not a CA certificate (basic constraints CA:FALSE or absent)"
    )]
    NotACa {
        /// Subject of the rejected certificate.
        subject: String,
    },
    /// The CA private key PEM cannot be parsed.
    #[error("CA private key cannot be parsed: {0}")]
    InvalidCaKey(rcgen::Error),
    /// A certificate PEM is not a parsable X.509 certificate.
    #[error("certificate cannot be parsed: {0}")]
    InvalidCertificate(String),
    /// A private key PEM cannot be parsed.
    #[error("private key cannot be parsed: {0}")]
    InvalidKey(rcgen::Error),
    /// The CA private key does not belong to the CA certificate.
    #[error("the CA private key does not match the CA certificate's public key")]
    CaKeyMismatch,
    /// The CSR is not parsable, uses an unsupported extension, or its
    /// signature does not verify with the key it carries.
    #[error("certificate signing request rejected: {0}")]
    InvalidCsr(rcgen::Error),
    /// The CSR's subject CN is not the VEN id the certificate is issued for.
    #[error("CSR subject CN is {found:?}, but the certificate is for VEN {expected:?}")]
    CsrSubjectMismatch {
        /// The VEN id the caller asked to certify.
        expected: String,
        /// The CN found in the CSR.
        found: String,
    },
    /// The VEN id is a reserved identity (see [`BACKEND_IDENTITY`]).
    #[error("{0:?} is reserved for the cloud backend and cannot be a VEN id")]
    ReservedIdentity(String),
    /// A server name is neither an IP address nor a valid DNS name.
    #[error("invalid server name {name:?}: {source}")]
    InvalidServerName {
        /// The rejected name.
        name: String,
        /// Why rcgen refused it.
        source: rcgen::Error,
    },
    /// The system random number generator failed.
    #[error("system random number generator failed")]
    Random,
    /// Reading or writing a certificate or key file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A certificate and its freshly generated private key, both PEM.
#[derive(Clone)]
pub struct IssuedCertificate {
    /// The certificate (PEM, one block).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM). Secret: write it with mode 0600.
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// An ECDSA P-256 certificate authority that issues broker, backend and VEN
/// certificates.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    not_after: OffsetDateTime,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_pem", &self.cert_pem)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Creates a self-signed CA (basic constraints CA, path length 0; key
    /// usages certificate sign and CRL sign) with a new P-256 key.
    /// `common_name` defaults to [`DEFAULT_CA_NAME`].
    pub fn create(common_name: Option<&str>) -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name_dn(common_name.unwrap_or(DEFAULT_CA_NAME));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(random_serial()?);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            not_after: params.not_after,
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
        })
    }

    /// Loads a CA from its certificate and private key (PEM), e.g. the
    /// files [`CertificateAuthority::cert_pem`] and
    /// [`CertificateAuthority::key_pem`] wrote earlier. Checks that the
    /// certificate is a CA and that the key is its key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(PkiError::InvalidCaKey)?;
        let der = first_pem_block(cert_pem, "CERTIFICATE")
            .ok_or_else(|| PkiError::InvalidCaCertificate("no CERTIFICATE PEM block".into()))?;
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| PkiError::InvalidCaCertificate(e.to_string()))?;
        let is_ca = cert
            .basic_constraints()
            .map_err(|e| PkiError::InvalidCaCertificate(e.to_string()))?
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(PkiError::NotACa {
                subject: cert.subject().to_string(),
            });
        }
        if cert.tbs_certificate.subject_pki.raw != key.subject_public_key_info().as_slice() {
            return Err(PkiError::CaKeyMismatch);
        }
        let not_after = cert.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_der(&der.into(), key)
            .map_err(|e| PkiError::InvalidCaCertificate(e.to_string()))?;
        Ok(Self {
            issuer,
            cert_pem: cert_pem.to_owned(),
            not_after,
        })
    }

    /// The CA certificate (PEM): what brokers and clients trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key (PKCS#8 PEM). Secret: write it with mode 0600.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues a server (broker) certificate, EKU serverAuth, for `names`:
    /// each is an IP address or a DNS name; the first is also the CN.
    /// An empty slice means [`DEFAULT_SERVER_NAMES`].
    pub fn issue_server(&self, names: &[&str]) -> Result<IssuedCertificate, PkiError> {
        let names = if names.is_empty() {
            DEFAULT_SERVER_NAMES
        } else {
            names
        };
        let mut params = self.leaf_params(names[0], ExtendedKeyUsagePurpose::ServerAuth)?;
        params.subject_alt_names = names
            .iter()
            .map(|name| server_san(name))
            .collect::<Result<_, _>>()?;
        self.issue_with_new_key(&params)
    }

    /// Issues a VEN client certificate, CN = `ven` and EKU clientAuth, with
    /// a new key. Prefer [`CertificateAuthority::sign_csr`] in the field, so
    /// the key never leaves the gateway.
    pub fn issue_ven(&self, ven: &VenId) -> Result<IssuedCertificate, PkiError> {
        check_not_reserved(ven)?;
        let params = self.leaf_params(ven.as_str(), ExtendedKeyUsagePurpose::ClientAuth)?;
        self.issue_with_new_key(&params)
    }

    /// Issues the cloud backend's client certificate (CN
    /// [`BACKEND_IDENTITY`], EKU clientAuth) with a new key.
    pub fn issue_backend(&self) -> Result<IssuedCertificate, PkiError> {
        let params = self.leaf_params(BACKEND_IDENTITY, ExtendedKeyUsagePurpose::ClientAuth)?;
        self.issue_with_new_key(&params)
    }

    /// Signs a CSR (PEM) made on the gateway and returns the VEN client
    /// certificate (PEM).
    ///
    /// The CSR's signature is verified. Only its public key is taken: the
    /// subject is set to CN = `ven`, and any extensions it requests are
    /// ignored in favour of clientAuth. A CSR whose CN differs from `ven` is
    /// refused (a CSR without CN is accepted), so a CSR for one gateway
    /// cannot be certified as another by a mix-up.
    pub fn sign_csr(&self, ven: &VenId, csr_pem: &str) -> Result<String, PkiError> {
        let der = first_pem_block(csr_pem, "CERTIFICATE REQUEST")
            .or_else(|| first_pem_block(csr_pem, "NEW CERTIFICATE REQUEST"))
            .ok_or(PkiError::InvalidCsr(
                rcgen::Error::CouldNotParseCertificationRequest,
            ))?;
        self.sign_csr_der(ven, &der)
    }

    /// [`CertificateAuthority::sign_csr`] for a DER-encoded CSR.
    pub fn sign_csr_der(&self, ven: &VenId, csr_der: &[u8]) -> Result<String, PkiError> {
        check_not_reserved(ven)?;
        let csr = CertificateSigningRequestParams::from_der(&csr_der.into())
            .map_err(PkiError::InvalidCsr)?;
        check_csr_subject(&csr, ven)?;
        let params = self.leaf_params(ven.as_str(), ExtendedKeyUsagePurpose::ClientAuth)?;
        Ok(params.signed_by(&csr.public_key, &self.issuer)?.pem())
    }

    /// Like [`CertificateAuthority::issue_ven`], valid for `validity`
    /// (capped at the CA's own expiry).
    pub fn issue_ven_for(
        &self,
        ven: &VenId,
        validity: Duration,
    ) -> Result<IssuedCertificate, PkiError> {
        check_not_reserved(ven)?;
        let mut params = self.leaf_params(ven.as_str(), ExtendedKeyUsagePurpose::ClientAuth)?;
        self.set_validity(&mut params, validity);
        self.issue_with_new_key(&params)
    }

    /// Like [`CertificateAuthority::sign_csr`], valid for `validity`
    /// (capped at the CA's own expiry).
    pub fn sign_csr_for(
        &self,
        ven: &VenId,
        csr_pem: &str,
        validity: Duration,
    ) -> Result<String, PkiError> {
        check_not_reserved(ven)?;
        let csr = parse_csr(csr_pem)?;
        check_csr_subject(&csr, ven)?;
        let mut params = self.leaf_params(ven.as_str(), ExtendedKeyUsagePurpose::ClientAuth)?;
        self.set_validity(&mut params, validity);
        Ok(params.signed_by(&csr.public_key, &self.issuer)?.pem())
    }

    /// A certificate revocation list (PEM) signed by this CA, listing
    /// `revoked` (serial number bytes, big-endian, and revocation time),
    /// valid until `next_update`. `number` must grow with every new CRL.
    pub fn crl(
        &self,
        revoked: &[(Vec<u8>, OffsetDateTime)],
        number: u64,
        next_update: OffsetDateTime,
    ) -> Result<String, PkiError> {
        let params = CertificateRevocationListParams {
            this_update: OffsetDateTime::now_utc() - CLOCK_SKEW,
            next_update,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|(serial, at)| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: *at,
                    reason_code: Some(RevocationReason::Unspecified),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }

    fn set_validity(&self, params: &mut CertificateParams, validity: Duration) {
        params.not_after = (params.not_before + CLOCK_SKEW + validity).min(self.not_after);
    }

    fn leaf_params(
        &self,
        common_name: &str,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<CertificateParams, PkiError> {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name_dn(common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - CLOCK_SKEW;
        params.not_after = (now + LEAF_VALIDITY).min(self.not_after);
        params.serial_number = Some(random_serial()?);
        Ok(params)
    }

    fn issue_with_new_key(
        &self,
        params: &CertificateParams,
    ) -> Result<IssuedCertificate, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Paths of one certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFiles {
    /// Certificate, PEM.
    pub cert: PathBuf,
    /// Private key, PKCS#8 PEM, mode 0600.
    pub key: PathBuf,
}

/// A complete PKI in one directory for tests and the demo: `ca.pem`,
/// `server.pem` / `server.key` (for [`DEFAULT_SERVER_NAMES`]) and
/// `<identity>.pem` / `<identity>.key` for the backend and each VEN.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use gridlink_protocol::VenId;
/// use gridlink_provision::pki::TestPki;
///
/// let dir = std::env::temp_dir().join("gridlink-pki-example");
/// std::fs::create_dir_all(&dir)?;
/// let pki = TestPki::generate(&dir, &[VenId::new("ven-1")?])?;
/// assert!(pki.identity("ven-1").is_some());
/// println!("trust {}", pki.ca_cert().display());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestPki {
    dir: PathBuf,
    ca: CertificateAuthority,
    ca_cert: PathBuf,
    server: IdentityFiles,
    identities: BTreeMap<String, IdentityFiles>,
}

impl TestPki {
    /// Creates a CA in `dir` (which must exist) and writes the CA
    /// certificate, a server certificate, the backend's client certificate
    /// and one client certificate per VEN. Existing files are overwritten.
    pub fn generate(dir: &Path, vens: &[VenId]) -> Result<Self, PkiError> {
        let ca = CertificateAuthority::create(None)?;
        let ca_cert = dir.join("ca.pem");
        write_public(&ca_cert, ca.cert_pem())?;
        let server = write_identity(dir, "server", &ca.issue_server(&[])?)?;
        let mut pki = Self {
            dir: dir.to_owned(),
            ca,
            ca_cert,
            server,
            identities: BTreeMap::new(),
        };
        let backend = pki.ca.issue_backend()?;
        pki.insert(BACKEND_IDENTITY, &backend)?;
        for ven in vens {
            pki.add_ven(ven)?;
        }
        Ok(pki)
    }

    /// Issues and writes a client certificate for one more VEN.
    pub fn add_ven(&mut self, ven: &VenId) -> Result<&IdentityFiles, PkiError> {
        let issued = self.ca.issue_ven(ven)?;
        self.insert(ven.as_str(), &issued)
    }

    fn insert(
        &mut self,
        name: &str,
        issued: &IssuedCertificate,
    ) -> Result<&IdentityFiles, PkiError> {
        let files = write_identity(&self.dir, name, issued)?;
        Ok(self.identities.entry(name.to_owned()).or_insert(files))
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA, to issue further certificates.
    pub fn ca(&self) -> &CertificateAuthority {
        &self.ca
    }

    /// `ca.pem`: the CA certificate brokers and clients trust.
    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    /// `server.pem` / `server.key`: the broker's certificate.
    pub fn server(&self) -> &IdentityFiles {
        &self.server
    }

    /// The backend's client certificate (CN [`BACKEND_IDENTITY`]).
    pub fn backend(&self) -> &IdentityFiles {
        &self.identities[BACKEND_IDENTITY]
    }

    /// The client certificate files of `name` (a VEN id or
    /// [`BACKEND_IDENTITY`]), if generated.
    pub fn identity(&self, name: &str) -> Option<&IdentityFiles> {
        self.identities.get(name)
    }
}

/// Writes `<name>.pem` (0644) and `<name>.key` (0600) into `dir`.
pub fn write_identity(
    dir: &Path,
    name: &str,
    issued: &IssuedCertificate,
) -> Result<IdentityFiles, PkiError> {
    let files = IdentityFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    write_public(&files.cert, &issued.cert_pem)?;
    write_private(&files.key, &issued.key_pem)?;
    Ok(files)
}

/// Writes a certificate or other public file with mode 0644.
pub fn write_public(path: &Path, contents: &str) -> Result<(), PkiError> {
    write_with_mode(path, contents, 0o644)
}

/// Writes a private key with mode 0600. The file is created with that mode
/// (never briefly world-readable) and an existing file is reset to it.
pub fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    write_with_mode(path, contents, 0o600)
}

fn write_with_mode(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let io_err = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io_err)?;
    // `mode` only applies when the file is created; reset an existing one.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err)?;
    file.write_all(contents.as_bytes()).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

fn parse_csr(csr_pem: &str) -> Result<CertificateSigningRequestParams, PkiError> {
    let der = first_pem_block(csr_pem, "CERTIFICATE REQUEST")
        .or_else(|| first_pem_block(csr_pem, "NEW CERTIFICATE REQUEST"))
        .ok_or(PkiError::InvalidCsr(
            rcgen::Error::CouldNotParseCertificationRequest,
        ))?;
    CertificateSigningRequestParams::from_der(&der.into()).map_err(PkiError::InvalidCsr)
}

fn check_csr_subject(csr: &CertificateSigningRequestParams, ven: &VenId) -> Result<(), PkiError> {
    if let Some(value) = csr.params.distinguished_name.get(&DnType::CommonName) {
        let found = dn_value_text(value);
        if found.as_deref() != Some(ven.as_str()) {
            return Err(PkiError::CsrSubjectMismatch {
                expected: ven.as_str().to_owned(),
                found: found.unwrap_or_else(|| format!("{value:?}")),
            });
        }
    }
    Ok(())
}

/// The subject CN a CSR (PEM) asks for, after checking its signature;
/// `None` if it names no CN.
pub fn csr_common_name(csr_pem: &str) -> Result<Option<String>, PkiError> {
    let csr = parse_csr(csr_pem)?;
    Ok(csr
        .params
        .distinguished_name
        .get(&DnType::CommonName)
        .map(|v| dn_value_text(v).unwrap_or_else(|| format!("{v:?}"))))
}

/// A new ECDSA P-256 key and a CSR for it with CN = `ven`, both PEM: what
/// `gridlink-agent keygen` makes on the gateway.
pub fn generate_csr(ven: &VenId) -> Result<IssuedCsr, PkiError> {
    check_not_reserved(ven)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name_dn(ven.as_str());
    let csr = params.serialize_request(&key)?;
    Ok(IssuedCsr {
        csr_pem: csr.pem()?,
        key_pem: key.serialize_pem(),
    })
}

/// A CSR and its private key, both PEM.
#[derive(Clone)]
pub struct IssuedCsr {
    /// The certificate signing request.
    pub csr_pem: String,
    /// The private key (PKCS#8 PEM). Secret: write it with mode 0600.
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCsr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCsr")
            .field("csr_pem", &self.csr_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// What [`inspect_certificate`] reads from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// Subject CN, if any.
    pub common_name: Option<String>,
    /// Issuer, as text.
    pub issuer: String,
    /// Serial number, big-endian bytes.
    pub serial: Vec<u8>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// The subject public key info (DER).
    pub public_key: Vec<u8>,
}

/// Reads the first certificate of a PEM text.
pub fn inspect_certificate(cert_pem: &str) -> Result<CertificateFacts, PkiError> {
    let der = first_pem_block(cert_pem, "CERTIFICATE")
        .ok_or_else(|| PkiError::InvalidCertificate("no CERTIFICATE PEM block".into()))?;
    let (_, cert) =
        X509Certificate::from_der(&der).map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    Ok(CertificateFacts {
        common_name,
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial().to_vec(),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        public_key: cert.tbs_certificate.subject_pki.raw.to_vec(),
    })
}

/// Whether `cert_pem` carries a valid signature by the key of `ca_pem`.
pub fn signed_by(cert_pem: &str, ca_pem: &str) -> Result<bool, PkiError> {
    let cert_der = first_pem_block(cert_pem, "CERTIFICATE")
        .ok_or_else(|| PkiError::InvalidCertificate("no CERTIFICATE PEM block".into()))?;
    let ca_der = first_pem_block(ca_pem, "CERTIFICATE")
        .ok_or_else(|| PkiError::InvalidCaCertificate("no CERTIFICATE PEM block".into()))?;
    let (_, cert) = X509Certificate::from_der(&cert_der)
        .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    let (_, ca) = X509Certificate::from_der(&ca_der)
        .map_err(|e| PkiError::InvalidCaCertificate(e.to_string()))?;
    Ok(cert.verify_signature(Some(ca.public_key())).is_ok())
}

/// The public key info (DER) of a private key (PKCS#8 PEM), to compare with
/// [`CertificateFacts::public_key`].
pub fn key_public_key(key_pem: &str) -> Result<Vec<u8>, PkiError> {
    let key = KeyPair::from_pem(key_pem).map_err(PkiError::InvalidKey)?;
    Ok(key.subject_public_key_info())
}

fn common_name_dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn server_san(name: &str) -> Result<SanType, PkiError> {
    if let Ok(ip) = name.parse() {
        return Ok(SanType::IpAddress(ip));
    }
    name.try_into()
        .map(SanType::DnsName)
        .map_err(|source| PkiError::InvalidServerName {
            name: name.to_owned(),
            source,
        })
}

fn check_not_reserved(ven: &VenId) -> Result<(), PkiError> {
    if ven.as_str() == BACKEND_IDENTITY {
        return Err(PkiError::ReservedIdentity(ven.as_str().to_owned()));
    }
    Ok(())
}

/// A random positive 159-bit serial (RFC 5280: at most 20 octets). rcgen's
/// default derives the serial from the public key, which would give a
/// renewed certificate for the same key the serial of the old one and make
/// revoking one revoke both.
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0_u8; 20];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Random)?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // keep all 20 octets significant
    Ok(SerialNumber::from_slice(&bytes))
}

fn dn_value_text(value: &DnValue) -> Option<String> {
    match value {
        DnValue::Utf8String(s) => Some(s.clone()),
        DnValue::PrintableString(s) => Some(s.as_str().to_owned()),
        DnValue::Ia5String(s) => Some(s.as_str().to_owned()),
        DnValue::TeletexString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn first_pem_block(pem: &str, label: &str) -> Option<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .find(|block| block.label == label)
        .map(|block| block.contents)
}

#[cfg(test)]
mod tests;
