//! `gridlink-provision aws ...` against a local moto server: the register
//! sequence, idempotency, the policy document, revoke, and a batch with a
//! failing row. moto makes its own key for CreateCertificateFromCsr, so the
//! key-matches-certificate check is tested with the own CA (tests/broker.rs),
//! not here.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use aws_sdk_iot::config::{BehaviorVersion, Credentials, Region};
use gridlink_protocol::VenId;
use gridlink_provision::aws::{AMAZON_ROOT_CA_1, AwsIot, DEFAULT_POLICY_NAME};
use gridlink_provision::pki;
use gridlink_testkit::moto::MotoServer;

const REGION: &str = "eu-west-1";

fn provision(moto: &MotoServer, args: &[&str]) -> Output {
    Command::new(gridlink_e2e::binary("gridlink-provision"))
        .arg("aws")
        .args(args)
        .args(["--endpoint-url", &moto.url(), "--region", REGION])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn iot(moto: &MotoServer) -> AwsIot {
    let config = aws_sdk_iot::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(moto.url())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .build();
    AwsIot::from_client(aws_sdk_iot::Client::from_conf(config))
}

fn csr(dir: &Path, ven: &str) -> String {
    let csr = pki::generate_csr(&VenId::new(ven).unwrap()).unwrap();
    let path = dir.join(format!("{ven}.csr"));
    fs::write(&path, csr.csr_pem).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn register_is_idempotent_writes_a_bundle_and_revoke_detaches() {
    let moto = MotoServer::spawn();
    let dir = tempfile::tempdir().unwrap();
    let csr = csr(dir.path(), "site-1");
    let out = dir.path().join("bundle");
    let args = |out: &Path| {
        vec![
            "register".to_owned(),
            "--ven".into(),
            "site-1".into(),
            "--csr".into(),
            csr.clone(),
            "--out".into(),
            out.to_str().unwrap().to_owned(),
        ]
    };
    let first = provision(
        &moto,
        &args(&out).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(first.status.success(), "{}", text(&first));
    let said = text(&first);
    assert!(
        said.contains("thing created")
            && said.contains("(created)")
            && said.contains("policy created"),
        "{said}"
    );

    let client = iot(&moto);
    let ven = VenId::new("site-1").unwrap();
    let principals = client.principals(&ven).await.unwrap();
    assert_eq!(principals.len(), 1, "{principals:?}");
    let policy = client
        .policy_document(DEFAULT_POLICY_NAME)
        .await
        .unwrap()
        .expect("the device policy exists");
    let policy: serde_json::Value = serde_json::from_str(&policy).unwrap();
    let ours: serde_json::Value =
        serde_json::from_str(include_str!("../../provisioning/policy/device-policy.json")).unwrap();
    assert_eq!(policy, ours, "the policy is the committed document");

    // The bundle: the certificate AWS issued, Amazon's root, the endpoint.
    // moto answers DescribeEndpoint with a new random name each time.
    let endpoint = format!("-ats.iot.{REGION}.amazonaws.com\"");
    assert_eq!(
        fs::read_to_string(out.join("ca.pem")).unwrap(),
        AMAZON_ROOT_CA_1
    );
    let toml = fs::read_to_string(out.join("agent.toml")).unwrap();
    assert!(
        toml.lines()
            .any(|l| l.starts_with("host = \"") && l.ends_with(&endpoint)),
        "{toml}"
    );
    assert!(toml.contains("ven_id = \"site-1\""));
    let cert = fs::read_to_string(out.join("cert.pem")).unwrap();
    assert!(pki::inspect_certificate(&cert).is_ok());
    assert!(!out.join("key.pem").exists());

    // Again: nothing new is made.
    let out2 = dir.path().join("bundle-again");
    let second = provision(
        &moto,
        &args(&out2).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(second.status.success(), "{}", text(&second));
    let said = text(&second);
    assert!(
        said.contains("thing existed")
            && said.contains("(reused)")
            && said.contains("policy existed"),
        "{said}"
    );
    assert_eq!(client.principals(&ven).await.unwrap(), principals);
    assert_eq!(fs::read_to_string(out2.join("cert.pem")).unwrap(), cert);

    // An existing bundle is never overwritten.
    let third = provision(
        &moto,
        &args(&out).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(third.status.code(), Some(1));
    assert!(text(&third).contains("refusing to overwrite"));

    // Revoke: REVOKED and detached.
    let revoked = provision(&moto, &["revoke", "--ven", "site-1"]);
    assert!(revoked.status.success(), "{}", text(&revoked));
    assert!(text(&revoked).contains("revoked and detached 1 certificate"));
    let id = principals[0].rsplit_once('/').unwrap().1;
    assert_eq!(
        client.certificate_status(id).await.unwrap().as_deref(),
        Some("REVOKED")
    );
    assert!(client.principals(&ven).await.unwrap().is_empty());
    let again = provision(&moto, &["revoke", "--ven", "site-1"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("no certificate is attached"));
}

#[tokio::test]
async fn a_csr_for_another_ven_is_refused_before_aws_is_called() {
    let moto = MotoServer::spawn();
    let dir = tempfile::tempdir().unwrap();
    let csr = csr(dir.path(), "site-2");
    let out = dir.path().join("b");
    let o = provision(
        &moto,
        &[
            "register",
            "--ven",
            "site-3",
            "--csr",
            &csr,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("the CSR is for \"site-2\", not \"site-3\""),
        "{}",
        text(&o)
    );
    assert!(
        iot(&moto)
            .principals(&VenId::new("site-3").unwrap())
            .await
            .is_err(),
        "no thing was created"
    );
    assert!(!out.exists());
}

#[tokio::test]
async fn batch_registers_what_it_can_reports_failures_and_resumes() {
    let moto = MotoServer::spawn();
    moto.reset();
    let dir = tempfile::tempdir().unwrap();
    csr(dir.path(), "gw-1");
    csr(dir.path(), "gw-3");
    fs::write(
        dir.path().join("sites.csv"),
        "ven_id,csr,out\n\
         gw-1,gw-1.csr,out/gw-1\n\
         gw-2,missing.csr,out/gw-2\n\
         gw-3,gw-3.csr,out/gw-3\n",
    )
    .unwrap();
    let batch = dir.path().join("sites.csv");
    let o = provision(&moto, &["register", "--batch", batch.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let said = text(&o);
    assert!(
        said.contains("registered 2, skipped 0 (done before), failed 1"),
        "{said}"
    );
    assert!(
        said.contains("line 3: gw-2:") && said.contains("missing.csr"),
        "{said}"
    );
    assert!(said.contains("[####################]    3/3"), "{said}");
    assert!(dir.path().join("out/gw-3/cert.pem").exists());

    // Resume after fixing the row: the done rows are skipped.
    csr(dir.path(), "gw-2");
    fs::rename(dir.path().join("gw-2.csr"), dir.path().join("missing.csr")).unwrap();
    let o = provision(&moto, &["register", "--batch", batch.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("registered 1, skipped 2 (done before), failed 0"),
        "{}",
        text(&o)
    );
    let client = iot(&moto);
    for ven in ["gw-1", "gw-2", "gw-3"] {
        let principals = client.principals(&VenId::new(ven).unwrap()).await.unwrap();
        assert_eq!(principals.len(), 1, "{ven}");
    }
}
