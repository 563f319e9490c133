//! PKI tests: every certificate is checked the way a peer checks it, by a
//! real TLS handshake between an in-memory rustls client and server.

use std::io;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
};

use super::*;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn ven(id: &str) -> VenId {
    VenId::new(id).expect("valid ven id")
}

fn cert_der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("certificate PEM")
}

fn key_der(pem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).expect("key PEM")
}

fn roots(ca: &CertificateAuthority) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots
        .add(cert_der(ca.cert_pem()))
        .expect("CA accepted as root");
    Arc::new(roots)
}

/// A server that trusts `client_ca` for client certificates and presents `server`.
fn server_config(client_ca: &CertificateAuthority, server: &IssuedCertificate) -> ServerConfig {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(client_ca), provider())
        .build()
        .expect("client verifier");
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert_der(&server.cert_pem)], key_der(&server.key_pem))
        .expect("server cert and key")
}

/// A client that trusts `server_ca` and presents `client` (cert PEM, key PEM).
fn client_config(server_ca: &CertificateAuthority, client: Option<(&str, &str)>) -> ClientConfig {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots(server_ca));
    match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(vec![cert_der(cert)], key_der(key))
            .expect("client cert and key"),
        None => builder.with_no_client_auth(),
    }
}

/// Runs a full handshake in memory; on success returns the client
/// certificate the server accepted.
fn handshake(
    client: ClientConfig,
    server: ServerConfig,
    server_name: &str,
) -> Result<CertificateDer<'static>, rustls::Error> {
    let name = ServerName::try_from(server_name.to_owned()).expect("server name");
    let mut client = Connection::Client(ClientConnection::new(Arc::new(client), name)?);
    let mut server = Connection::Server(ServerConnection::new(Arc::new(server))?);
    // A TLS 1.3 handshake with client auth needs 2 round trips; the loop is
    // bounded so a stuck handshake fails instead of spinning.
    for _ in 0..10 {
        transfer(&mut client, &mut server)?;
        server.process_new_packets()?;
        transfer(&mut server, &mut client)?;
        client.process_new_packets()?;
        if !client.is_handshaking() && !server.is_handshaking() {
            let peer = server
                .peer_certificates()
                .and_then(|chain| chain.first())
                .expect("server requires a client certificate");
            return Ok(peer.clone().into_owned());
        }
    }
    panic!("handshake did not finish in 10 round trips");
}

fn transfer(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).expect("write to Vec");
    }
    let mut rd = io::Cursor::new(buf);
    while (rd.position() as usize) < rd.get_ref().len() {
        to.read_tls(&mut rd).expect("read from memory");
        to.process_new_packets()?;
    }
    Ok(())
}

fn common_name(der: &[u8]) -> String {
    let (_, cert) = X509Certificate::from_der(der).expect("parsable certificate");
    cert.subject()
        .iter_common_name()
        .next()
        .expect("CN present")
        .as_str()
        .expect("CN is a string")
        .to_owned()
}

fn extended_key_usage(der: &[u8]) -> (bool, bool) {
    let (_, cert) = X509Certificate::from_der(der).expect("parsable certificate");
    let eku = cert
        .extended_key_usage()
        .expect("well-formed EKU")
        .expect("EKU present")
        .value;
    (eku.server_auth, eku.client_auth)
}

struct Fixture {
    ca: CertificateAuthority,
    server: IssuedCertificate,
}

fn fixture() -> Fixture {
    let ca = CertificateAuthority::create(None).expect("CA");
    let server = ca.issue_server(&[]).expect("server cert");
    Fixture { ca, server }
}

#[test]
fn ven_certificate_chains_to_ca_and_carries_ven_id_as_cn() {
    let f = fixture();
    let client = f.ca.issue_ven(&ven("ven-1")).expect("client cert");
    let peer = handshake(
        client_config(&f.ca, Some((&client.cert_pem, &client.key_pem))),
        server_config(&f.ca, &f.server),
        "127.0.0.1",
    )
    .expect("handshake with a certificate from our CA");
    assert_eq!(common_name(&peer), "ven-1");
    assert_eq!(extended_key_usage(&peer), (false, true));
}

#[test]
fn client_certificate_from_another_ca_is_refused() {
    let f = fixture();
    let rogue_ca = CertificateAuthority::create(Some("rogue CA")).expect("rogue CA");
    let rogue = rogue_ca.issue_ven(&ven("ven-1")).expect("rogue cert");
    let err = handshake(
        client_config(&f.ca, Some((&rogue.cert_pem, &rogue.key_pem))),
        server_config(&f.ca, &f.server),
        "127.0.0.1",
    )
    .expect_err("a foreign CA's client certificate must be refused");
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        ),
        "{err:?}"
    );
}

#[test]
fn missing_client_certificate_is_refused() {
    let f = fixture();
    let err = handshake(
        client_config(&f.ca, None),
        server_config(&f.ca, &f.server),
        "127.0.0.1",
    )
    .expect_err("a client without certificate must be refused");
    assert!(
        matches!(err, rustls::Error::NoCertificatesPresented),
        "{err:?}"
    );
}

#[test]
fn server_certificate_covers_loopback_names_only() {
    let f = fixture();
    let client = f.ca.issue_backend().expect("backend cert");
    assert_eq!(common_name(&cert_der(&f.server.cert_pem)), "127.0.0.1");
    for name in ["127.0.0.1", "localhost"] {
        let peer = handshake(
            client_config(&f.ca, Some((&client.cert_pem, &client.key_pem))),
            server_config(&f.ca, &f.server),
            name,
        )
        .unwrap_or_else(|e| panic!("server cert must be valid for {name}: {e}"));
        assert_eq!(common_name(&peer), BACKEND_IDENTITY);
    }
    let err = handshake(
        client_config(&f.ca, Some((&client.cert_pem, &client.key_pem))),
        server_config(&f.ca, &f.server),
        "broker.example.com",
    )
    .expect_err("server cert must not be valid for other names");
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{err:?}"
    );
}

#[test]
fn extended_key_usages_keep_roles_apart() {
    let f = fixture();
    assert_eq!(
        extended_key_usage(&cert_der(&f.server.cert_pem)),
        (true, false)
    );
    // The broker's certificate cannot log in as a client ...
    let err = handshake(
        client_config(&f.ca, Some((&f.server.cert_pem, &f.server.key_pem))),
        server_config(&f.ca, &f.server),
        "127.0.0.1",
    )
    .expect_err("a serverAuth certificate must not authenticate a client");
    assert!(
        matches!(err, rustls::Error::InvalidCertificate(_)),
        "{err:?}"
    );
    // ... and a VEN's certificate cannot impersonate the broker.
    let client = f.ca.issue_ven(&ven("ven-1")).expect("client cert");
    let err = handshake(
        client_config(&f.ca, Some((&client.cert_pem, &client.key_pem))),
        server_config(&f.ca, &client),
        "127.0.0.1",
    )
    .expect_err("a clientAuth certificate must not authenticate a server");
    assert!(
        matches!(err, rustls::Error::InvalidCertificate(_)),
        "{err:?}"
    );
}

#[test]
fn ca_reloaded_from_pem_issues_certificates_the_original_trusts() {
    let f = fixture();
    let reloaded =
        CertificateAuthority::from_pem(f.ca.cert_pem(), &f.ca.key_pem()).expect("reload CA");
    assert_eq!(reloaded.cert_pem(), f.ca.cert_pem());
    let client = reloaded.issue_ven(&ven("ven-7")).expect("client cert");
    let peer = handshake(
        client_config(&f.ca, Some((&client.cert_pem, &client.key_pem))),
        server_config(&f.ca, &f.server),
        "localhost",
    )
    .expect("certificate from the reloaded CA chains to the original");
    assert_eq!(common_name(&peer), "ven-7");
}

#[test]
fn ca_certificate_has_ca_constraints_and_signing_usages() {
    let ca = CertificateAuthority::create(Some("site CA")).expect("CA");
    let der = cert_der(ca.cert_pem());
    let (_, cert) = X509Certificate::from_der(&der).expect("parse");
    assert_eq!(common_name(&der), "site CA");
    let bc = cert
        .basic_constraints()
        .expect("well-formed")
        .expect("present");
    assert!(bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(0));
    let ku = cert
        .key_usage()
        .expect("well-formed")
        .expect("present")
        .value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert!(cert.validity().is_valid());
    assert_eq!(
        common_name(&cert_der(
            CertificateAuthority::create(None).expect("CA").cert_pem()
        )),
        DEFAULT_CA_NAME
    );
}

#[test]
fn ca_loading_rejects_leaf_certificates_and_foreign_keys() {
    let f = fixture();
    let err = CertificateAuthority::from_pem(&f.server.cert_pem, &f.server.key_pem)
        .expect_err("a leaf certificate is not a CA");
    assert!(matches!(err, PkiError::NotACa { .. }), "{err:?}");

    let other = CertificateAuthority::create(None).expect("CA");
    let err = CertificateAuthority::from_pem(f.ca.cert_pem(), &other.key_pem())
        .expect_err("key of another CA");
    assert!(matches!(err, PkiError::CaKeyMismatch), "{err:?}");

    let err = CertificateAuthority::from_pem("not a pem", &f.ca.key_pem()).expect_err("garbage");
    assert!(matches!(err, PkiError::InvalidCaCertificate(_)), "{err:?}");
    let err = CertificateAuthority::from_pem(f.ca.cert_pem(), "not a pem").expect_err("garbage");
    assert!(matches!(err, PkiError::InvalidCaKey(_)), "{err:?}");
}

fn gateway_csr(common_name: Option<&str>) -> (String, KeyPair) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name = DistinguishedName::new();
    if let Some(cn) = common_name {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    // A CSR asking for more than it should get: serverAuth must not be granted.
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let csr = params.serialize_request(&key).expect("CSR");
    (csr.pem().expect("CSR PEM"), key)
}

#[test]
fn signed_csr_certifies_the_gateway_key_as_the_ven() {
    let f = fixture();
    for cn in [Some("ven-9"), None] {
        let (csr, key) = gateway_csr(cn);
        let cert = f.ca.sign_csr(&ven("ven-9"), &csr).expect("CSR signed");
        let der = cert_der(&cert);
        assert_eq!(common_name(&der), "ven-9");
        assert_eq!(extended_key_usage(&der), (false, true), "CSR's EKU ignored");
        let peer = handshake(
            client_config(&f.ca, Some((&cert, &key.serialize_pem()))),
            server_config(&f.ca, &f.server),
            "127.0.0.1",
        )
        .expect("the gateway's own key works with the signed certificate");
        assert_eq!(peer, der);
    }
}

#[test]
fn csr_for_another_ven_or_with_a_bad_signature_is_refused() {
    let f = fixture();
    let (csr, _) = gateway_csr(Some("ven-2"));
    let err = f.ca.sign_csr(&ven("ven-1"), &csr).expect_err("CN mismatch");
    assert!(
        matches!(&err, PkiError::CsrSubjectMismatch { expected, found } if expected == "ven-1" && found == "ven-2"),
        "{err:?}"
    );

    // Flip one bit in the last byte of the DER (inside the signature).
    let mut der = x509_parser::pem::Pem::iter_from_buffer(csr.as_bytes())
        .next()
        .expect("one block")
        .expect("valid PEM")
        .contents;
    f.ca.sign_csr_der(&ven("ven-2"), &der)
        .expect("the untampered DER is accepted");
    *der.last_mut().expect("non-empty") ^= 0x01;
    let err =
        f.ca.sign_csr_der(&ven("ven-2"), &der)
            .expect_err("tampered CSR");
    assert!(
        matches!(
            err,
            PkiError::InvalidCsr(rcgen::Error::InvalidCertificationRequestSignature)
        ),
        "{err:?}"
    );

    let err =
        f.ca.sign_csr(&ven("ven-2"), "garbage")
            .expect_err("not a CSR");
    assert!(matches!(err, PkiError::InvalidCsr(_)), "{err:?}");
}

#[test]
fn backend_identity_is_never_issued_to_a_ven() {
    let f = fixture();
    let backend = ven(BACKEND_IDENTITY);
    let err = f.ca.issue_ven(&backend).expect_err("reserved");
    assert!(matches!(err, PkiError::ReservedIdentity(_)), "{err:?}");
    let (csr, _) = gateway_csr(Some(BACKEND_IDENTITY));
    let err = f.ca.sign_csr(&backend, &csr).expect_err("reserved");
    assert!(matches!(err, PkiError::ReservedIdentity(_)), "{err:?}");
}

#[test]
fn invalid_ven_ids_and_server_names_are_refused() {
    // A VEN id reaches the CA only as a `VenId`, which cannot hold a
    // topic-breaking or over-long id.
    for bad in ["", "ven/1", "ven+1", "ven#", "vén"] {
        assert!(VenId::new(bad).is_err(), "{bad:?} accepted as ven id");
    }
    let f = fixture();
    let err =
        f.ca.issue_server(&["bücher.example"])
            .expect_err("non-ASCII DNS name");
    assert!(matches!(err, PkiError::InvalidServerName { .. }), "{err:?}");
}

#[test]
fn test_pki_writes_all_files_with_private_keys_0600() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A pre-existing, world-readable key file must end up 0600 too.
    fs::write(dir.path().join("ven-1.key"), "old").expect("write");
    fs::set_permissions(
        dir.path().join("ven-1.key"),
        fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");

    let mut pki = TestPki::generate(dir.path(), &[ven("ven-1"), ven("ven-2")]).expect("PKI");
    pki.add_ven(&ven("ven-3")).expect("one more VEN");

    assert_eq!(pki.ca_cert(), dir.path().join("ca.pem"));
    assert_eq!(pki.server().cert, dir.path().join("server.pem"));
    assert_eq!(pki.server().key, dir.path().join("server.key"));
    assert_eq!(pki.backend().cert, dir.path().join("backend.pem"));
    assert!(pki.identity("ven-4").is_none());
    let mode = |path: &Path| fs::metadata(path).expect("stat").permissions().mode() & 0o777;

    let ca_pem = fs::read_to_string(pki.ca_cert()).expect("ca.pem");
    assert_eq!(ca_pem, pki.ca().cert_pem());
    let mut ca_roots = RootCertStore::empty();
    ca_roots.add(cert_der(&ca_pem)).expect("root");
    assert_eq!(mode(pki.ca_cert()), 0o644);
    let server = IssuedCertificate {
        cert_pem: fs::read_to_string(&pki.server().cert).expect("server.pem"),
        key_pem: fs::read_to_string(&pki.server().key).expect("server.key"),
    };
    assert_eq!(mode(&pki.server().key), 0o600);

    for name in [BACKEND_IDENTITY, "ven-1", "ven-2", "ven-3"] {
        let files = pki.identity(name).expect("identity written");
        assert_eq!(files.cert, dir.path().join(format!("{name}.pem")));
        assert_eq!(files.key, dir.path().join(format!("{name}.key")));
        assert_eq!(mode(&files.cert), 0o644, "{name}.pem");
        assert_eq!(mode(&files.key), 0o600, "{name}.key");
        let cert = fs::read_to_string(&files.cert).expect("cert");
        let key = fs::read_to_string(&files.key).expect("key");
        let peer = handshake(
            client_config(pki.ca(), Some((&cert, &key))),
            server_config(pki.ca(), &server),
            "localhost",
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(common_name(&peer), name);
    }
}
