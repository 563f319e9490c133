//! AWS IoT Core registration (`gridlink-provision aws ...`), with
//! aws-sdk-iot.
//!
//! `register` is idempotent: the thing is made if missing; an ACTIVE
//! certificate already attached to it is reused rather than a second one
//! made; the device policy ([`crate::policy::aws_iot_policy`]) is created if
//! missing; attaching what is attached already is a no-op in AWS. So a run
//! interrupted anywhere can simply be run again.

use aws_sdk_iot::Client;
use aws_sdk_iot::types::CertificateStatus;
use gridlink_protocol::VenId;

/// Amazon Root CA 1: what agents trust for AWS IoT Core's ATS endpoint.
pub const AMAZON_ROOT_CA_1: &str = include_str!("../certs/AmazonRootCA1.pem");

/// The device policy's default name.
pub const DEFAULT_POLICY_NAME: &str = "gridlink-device";

/// An AWS call that failed, named.
#[derive(Debug, thiserror::Error)]
#[error("AWS IoT {operation} failed: {message}")]
pub struct AwsError {
    /// The API operation, e.g. `CreateThing`.
    pub operation: &'static str,
    /// What AWS (or the connection) said.
    pub message: String,
}

fn fail<E>(operation: &'static str) -> impl FnOnce(aws_sdk_iot::error::SdkError<E>) -> AwsError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| AwsError {
        operation,
        message: aws_sdk_iot::error::DisplayErrorContext(&e).to_string(),
    }
}

/// What `register` did and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// True if the thing was created now (false: it existed).
    pub thing_created: bool,
    /// True if the certificate was created now (false: an active one was
    /// attached already and is reused).
    pub certificate_created: bool,
    /// The certificate's id.
    pub certificate_id: String,
    /// Its ARN.
    pub certificate_arn: String,
    /// The certificate (PEM).
    pub certificate_pem: String,
    /// True if the policy was created now.
    pub policy_created: bool,
    /// The account's data endpoint (`iot:Data-ATS`).
    pub endpoint: String,
}

/// An AWS IoT Core client.
#[derive(Debug, Clone)]
pub struct AwsIot {
    client: Client,
}

impl AwsIot {
    /// A client from the usual AWS configuration (environment, profile,
    /// instance role), optionally against another endpoint (moto,
    /// LocalStack) and region.
    pub async fn connect(endpoint_url: Option<&str>, region: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region.to_owned()));
        }
        Self {
            client: Client::new(&loader.load().await),
        }
    }

    /// A client over an SDK client made elsewhere (tests give explicit
    /// credentials and an endpoint).
    pub fn from_client(client: Client) -> Self {
        Self { client }
    }

    /// The ARNs of the certificates attached to the thing `ven`.
    pub async fn principals(&self, ven: &VenId) -> Result<Vec<String>, AwsError> {
        let mut all = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client
                .list_thing_principals()
                .thing_name(ven.as_str())
                .set_next_token(next.take())
                .send()
                .await
                .map_err(fail("ListThingPrincipals"))?;
            all.extend(page.principals().iter().cloned());
            match page.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_owned()),
                _ => return Ok(all),
            }
        }
    }

    /// The status of certificate `id` (`ACTIVE`, `REVOKED`, ...).
    pub async fn certificate_status(&self, id: &str) -> Result<Option<String>, AwsError> {
        let answer = self
            .client
            .describe_certificate()
            .certificate_id(id)
            .send()
            .await
            .map_err(fail("DescribeCertificate"))?;
        Ok(answer
            .certificate_description()
            .and_then(|d| d.status())
            .map(|s| s.as_str().to_owned()))
    }

    /// Registers `ven` with the CSR made on its gateway: CreateThing,
    /// CreateCertificateFromCsr (active), the device policy if missing,
    /// AttachPolicy, AttachThingPrincipal, DescribeEndpoint.
    pub async fn register(
        &self,
        ven: &VenId,
        csr_pem: &str,
        policy_name: &str,
    ) -> Result<Registration, AwsError> {
        let thing_created = self.ensure_thing(ven).await?;
        let (certificate_created, certificate_id, certificate_arn, certificate_pem) =
            if let Some((id, arn, pem)) = self.active_certificate(ven).await? {
                (false, id, arn, pem)
            } else {
                let created = self
                    .client
                    .create_certificate_from_csr()
                    .certificate_signing_request(csr_pem)
                    .set_as_active(true)
                    .send()
                    .await
                    .map_err(fail("CreateCertificateFromCsr"))?;
                let field = |v: Option<&str>, name: &str| {
                    v.map(str::to_owned).ok_or_else(|| AwsError {
                        operation: "CreateCertificateFromCsr",
                        message: format!("the answer has no {name}"),
                    })
                };
                (
                    true,
                    field(created.certificate_id(), "certificateId")?,
                    field(created.certificate_arn(), "certificateArn")?,
                    field(created.certificate_pem(), "certificatePem")?,
                )
            };
        let policy_created = self.ensure_policy(policy_name).await?;
        self.client
            .attach_policy()
            .policy_name(policy_name)
            .target(&certificate_arn)
            .send()
            .await
            .map_err(fail("AttachPolicy"))?;
        self.client
            .attach_thing_principal()
            .thing_name(ven.as_str())
            .principal(&certificate_arn)
            .send()
            .await
            .map_err(fail("AttachThingPrincipal"))?;
        let endpoint = self.endpoint().await?;
        Ok(Registration {
            thing_created,
            certificate_created,
            certificate_id,
            certificate_arn,
            certificate_pem,
            policy_created,
            endpoint,
        })
    }

    /// The account's ATS data endpoint (`iot:Data-ATS`).
    pub async fn endpoint(&self) -> Result<String, AwsError> {
        let answer = self
            .client
            .describe_endpoint()
            .endpoint_type("iot:Data-ATS")
            .send()
            .await
            .map_err(fail("DescribeEndpoint"))?;
        answer
            .endpoint_address()
            .map(str::to_owned)
            .ok_or_else(|| AwsError {
                operation: "DescribeEndpoint",
                message: "the answer has no endpointAddress".into(),
            })
    }

    /// Revokes every certificate of `ven`: UpdateCertificate REVOKED, then
    /// DetachPolicy and DetachThingPrincipal. Returns how many.
    pub async fn revoke(&self, ven: &VenId, policy_name: &str) -> Result<usize, AwsError> {
        let mut count = 0;
        for arn in self.principals(ven).await? {
            let id = certificate_id(&arn);
            self.client
                .update_certificate()
                .certificate_id(id)
                .new_status(CertificateStatus::Revoked)
                .send()
                .await
                .map_err(fail("UpdateCertificate"))?;
            self.client
                .detach_policy()
                .policy_name(policy_name)
                .target(&arn)
                .send()
                .await
                .map_err(fail("DetachPolicy"))?;
            self.client
                .detach_thing_principal()
                .thing_name(ven.as_str())
                .principal(&arn)
                .send()
                .await
                .map_err(fail("DetachThingPrincipal"))?;
            count += 1;
        }
        Ok(count)
    }

    /// The policy document stored under `name`, if any.
    pub async fn policy_document(&self, name: &str) -> Result<Option<String>, AwsError> {
        match self.client.get_policy().policy_name(name).send().await {
            Ok(policy) => Ok(policy.policy_document().map(str::to_owned)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(aws_sdk_iot::operation::get_policy::GetPolicyError::is_resource_not_found_exception) =>
            {
                Ok(None)
            }
            Err(e) => Err(fail("GetPolicy")(e)),
        }
    }

    async fn ensure_thing(&self, ven: &VenId) -> Result<bool, AwsError> {
        match self
            .client
            .describe_thing()
            .thing_name(ven.as_str())
            .send()
            .await
        {
            Ok(_) => Ok(false),
            Err(e)
                if e.as_service_error().is_some_and(
                    aws_sdk_iot::operation::describe_thing::DescribeThingError::is_resource_not_found_exception,
                ) =>
            {
                self.client
                    .create_thing()
                    .thing_name(ven.as_str())
                    .send()
                    .await
                    .map_err(fail("CreateThing"))?;
                Ok(true)
            }
            Err(e) => Err(fail("DescribeThing")(e)),
        }
    }

    async fn ensure_policy(&self, name: &str) -> Result<bool, AwsError> {
        if self.policy_document(name).await?.is_some() {
            return Ok(false);
        }
        self.client
            .create_policy()
            .policy_name(name)
            .policy_document(crate::policy::aws_iot_policy())
            .send()
            .await
            .map_err(fail("CreatePolicy"))?;
        Ok(true)
    }

    /// An ACTIVE certificate attached to the thing: (id, ARN, PEM).
    async fn active_certificate(
        &self,
        ven: &VenId,
    ) -> Result<Option<(String, String, String)>, AwsError> {
        for arn in self.principals(ven).await? {
            let answer = self
                .client
                .describe_certificate()
                .certificate_id(certificate_id(&arn))
                .send()
                .await
                .map_err(fail("DescribeCertificate"))?;
            if let Some(description) = answer.certificate_description()
                && description.status() == Some(&CertificateStatus::Active)
                && let Some(pem) = description.certificate_pem()
            {
                return Ok(Some((
                    certificate_id(&arn).to_owned(),
                    arn.clone(),
                    pem.to_owned(),
                )));
            }
        }
        Ok(None)
    }
}

/// The certificate id at the end of a certificate ARN (`...:cert/<id>`).
fn certificate_id(arn: &str) -> &str {
    arn.rsplit_once('/').map_or(arn, |(_, id)| id)
}

/// One row of a batch file: `ven_id,csr,out` (paths relative to the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRow {
    /// Line number in the file (1-based).
    pub line: usize,
    /// The VEN id.
    pub ven: String,
    /// The CSR file.
    pub csr: std::path::PathBuf,
    /// The bundle directory to write.
    pub out: std::path::PathBuf,
}

/// Reads a batch CSV: a header `ven_id,csr,out`, then one gateway a line;
/// blank lines and `#` comments are skipped. Paths are relative to the
/// file's directory.
pub fn read_batch(path: &std::path::Path) -> Result<Vec<BatchRow>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let base = path.parent().unwrap_or_else(|| std::path::Path::new("."));
    let mut rows = Vec::new();
    let mut header_seen = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if !header_seen {
            if fields != ["ven_id", "csr", "out"] {
                return Err(format!(
                    "{}:{}: the first line must be the header `ven_id,csr,out`",
                    path.display(),
                    i + 1
                ));
            }
            header_seen = true;
            continue;
        }
        let [ven, csr, out] = fields.as_slice() else {
            return Err(format!(
                "{}:{}: expected 3 fields (ven_id,csr,out), found {}",
                path.display(),
                i + 1,
                fields.len()
            ));
        };
        rows.push(BatchRow {
            line: i + 1,
            ven: (*ven).to_owned(),
            csr: base.join(csr),
            out: base.join(out),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_ids_come_from_arns() {
        assert_eq!(
            certificate_id("arn:aws:iot:eu-west-1:123456789012:cert/abc123"),
            "abc123"
        );
    }

    #[test]
    fn batch_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sites.csv");
        std::fs::write(
            &path,
            "ven_id,csr,out\n# comment\nsite-1,csr/site-1.csr,out/site-1\n\n",
        )
        .unwrap();
        let rows = read_batch(&path).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].line, 3);
        assert_eq!(rows[0].csr, dir.path().join("csr/site-1.csr"));
        std::fs::write(&path, "ven,csr,out\n").unwrap();
        assert!(read_batch(&path).unwrap_err().contains("header"));
        std::fs::write(&path, "ven_id,csr,out\na,b\n").unwrap();
        assert!(
            read_batch(&path)
                .unwrap_err()
                .contains(":2: expected 3 fields")
        );
    }

    #[test]
    fn the_embedded_root_is_amazon_root_ca_1() {
        let facts = crate::pki::inspect_certificate(AMAZON_ROOT_CA_1).unwrap();
        assert_eq!(facts.common_name.as_deref(), Some("Amazon Root CA 1"));
    }
}
