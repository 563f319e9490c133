//! gridlink provisioning: the own certificate authority used on-prem, in the
//! demo and in tests.
//!
//! A VEN authenticates to the broker with an X.509 client certificate whose
//! CN is its [`VenId`](gridlink_protocol::VenId); the broker maps the CN to
//! the MQTT user name and its ACL lets each VEN publish and subscribe only on
//! its own topics. [`pki::CertificateAuthority`] issues those certificates,
//! preferably by signing a CSR made on the gateway so the private key never
//! leaves it:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use gridlink_protocol::VenId;
//! use gridlink_provision::pki::CertificateAuthority;
//!
//! let ca = CertificateAuthority::create(None)?; // CN "gridlink CA", ECDSA P-256
//! let broker = ca.issue_server(&["127.0.0.1", "localhost"])?;
//! let ven = ca.issue_ven(&VenId::new("ven-1")?)?; // CN "ven-1", clientAuth
//!
//! // Later, e.g. in a `sign` command: reload the CA from its files.
//! let ca = CertificateAuthority::from_pem(ca.cert_pem(), &ca.key_pem())?;
//! # let _ = (broker, ven, ca);
//! # Ok(()) }
//! ```
//!
//! [`pki::TestPki`] writes a whole PKI (CA, broker, backend and VEN
//! certificates) into a directory for tests and the demo.

#[cfg(feature = "aws")]
pub mod aws;
pub mod broker;
pub mod bundle;
pub mod ca_dir;
pub mod pki;
pub mod policy;
#[cfg(feature = "cloud")]
pub mod register;
pub mod verify;
