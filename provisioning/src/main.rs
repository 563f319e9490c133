//! `gridlink-provision`: the installer's tool. Own CA for on-prem brokers,
//! CSR signing into a ready bundle, revocation with a CRL, a Mosquitto
//! configuration that mirrors the AWS IoT device policy, and diagnostics.
//!
//! Exit status: 0 on success, 1 when the operation or a `verify` check
//! failed, 2 for an unusable command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gridlink_protocol::VenId;
use gridlink_provision::broker::{BrokerOptions, write_broker_config};
use gridlink_provision::bundle::{Bundle, Endpoint};
use gridlink_provision::ca_dir::CaDir;
use gridlink_provision::verify;

/// gridlink installer tool: certificates, bundles, broker configuration and
/// diagnostics for site gateways.
#[derive(Debug, Parser)]
#[command(name = "gridlink-provision", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage the own certificate authority (on-prem brokers, demo, tests).
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Sign a CSR made on the gateway (`gridlink-agent keygen`) and write a
    /// bundle the agent runs from: cert.pem, ca.pem, agent.toml.
    Sign {
        /// The CA directory (`ca init`).
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The gateway's CSR (PEM); its CN must be a valid VEN id.
        #[arg(long, value_name = "FILE")]
        csr: PathBuf,
        /// The bundle directory to create (must not exist).
        #[arg(long, value_name = "BUNDLE")]
        out: PathBuf,
        /// Validity of the certificate in days.
        #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=7300))]
        days: u32,
        /// The broker the agent connects to, HOST[:PORT] (port 8883 if omitted).
        #[arg(long, value_name = "HOST[:PORT]", default_value = "localhost:8883")]
        endpoint: Endpoint,
    },
    /// Issue a certificate AND a key for a VEN (bench setups only: the key
    /// is made here, not on the gateway; prefer `keygen` + `sign`).
    Issue {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The VEN id (certificate CN, MQTT client id).
        #[arg(long, value_name = "VEN_ID")]
        ven: VenId,
        /// The bundle directory to create (must not exist).
        #[arg(long, value_name = "BUNDLE")]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=7300))]
        days: u32,
        /// The broker, HOST[:PORT].
        #[arg(long, value_name = "HOST[:PORT]", default_value = "localhost:8883")]
        endpoint: Endpoint,
    },
    /// Revoke every certificate the CA issued to a VEN and rewrite the CRL
    /// (then reload the broker: `kill -HUP $(pidof mosquitto)`).
    Revoke {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The VEN id.
        #[arg(long, value_name = "VEN_ID")]
        ven: VenId,
    },
    /// Write a Mosquitto configuration, ACL, server certificate and the
    /// cloud backend's certificate, mirroring the AWS IoT device policy.
    BrokerConfig {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// Where to write mosquitto.conf, acl, server.pem/.key, backend.pem/.key.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Names (DNS or IP) agents use to reach the broker; repeatable.
        #[arg(long = "server-name", value_name = "NAME", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        server_names: Vec<String>,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0")]
        bind: String,
        /// TLS port.
        #[arg(long, default_value_t = 8883)]
        port: u16,
    },
    /// Check a bundle: chain, expiry, key, CN, endpoint, TLS and MQTT
    /// connect; one line per check.
    Verify {
        /// The bundle directory.
        bundle: PathBuf,
    },
    /// Register a gateway's site and loads with the gridlink cloud.
    ///
    /// So the dashboard knows the site before the first reading: reads
    /// `ven_id` and the `[[loads]]` (`name`, `rated_power_w`, `never_switch`)
    /// of BUNDLE/agent.toml and sends them with the site and groups to
    /// `PUT /api/v1/vens/{id}` (an installer or admin token). Idempotent;
    /// once the agent has reported its loads, the cloud keeps those.
    ///
    /// Example:
    ///
    ///     gridlink-provision register-ven --cloud https://cloud.example.com \
    ///         --token glk_... --bundle ./depot-1 --site "Depot North" --group north
    #[cfg(feature = "cloud")]
    #[command(verbatim_doc_comment)]
    RegisterVen {
        /// The cloud's base URL, e.g. `https://cloud.example.com` or
        /// `http://127.0.0.1:8080`.
        #[arg(long, value_name = "URL")]
        cloud: String,
        /// An API token of role installer or admin (`gridlink-cloud token
        /// create --role installer`); or set `GRIDLINK_TOKEN`.
        #[arg(
            long,
            value_name = "TOKEN",
            env = "GRIDLINK_TOKEN",
            hide_env_values = true
        )]
        token: String,
        /// The gateway's bundle directory (its agent.toml is read).
        #[arg(long, value_name = "BUNDLE")]
        bundle: PathBuf,
        /// The site's name as the dashboard shows it (1-128 characters).
        #[arg(long, value_name = "NAME")]
        site: String,
        /// A group the VEN belongs to (event targets may name it);
        /// repeatable. Replaces the VEN's groups.
        #[arg(long = "group", value_name = "G")]
        groups: Vec<String>,
    },
    /// Register gateways with AWS IoT Core (things, certificates from CSRs,
    /// the device policy).
    #[cfg(feature = "aws")]
    Aws {
        #[command(flatten)]
        target: AwsTarget,
        #[command(subcommand)]
        command: AwsCommand,
    },
}

/// Where the AWS calls go.
#[cfg(feature = "aws")]
#[derive(Debug, clap::Args)]
struct AwsTarget {
    /// Another AWS IoT endpoint (moto, LocalStack); default: AWS itself.
    #[arg(long, global = true, value_name = "URL")]
    endpoint_url: Option<String>,
    /// The AWS region (default: from the environment or profile).
    #[arg(long, global = true)]
    region: Option<String>,
    /// The device policy's name (created from the one policy document if
    /// missing).
    #[arg(long, global = true, default_value = gridlink_provision::aws::DEFAULT_POLICY_NAME)]
    policy: String,
}

#[cfg(feature = "aws")]
#[derive(Debug, Subcommand)]
enum AwsCommand {
    /// Register one gateway (--ven, --csr, --out) or many (--batch FILE).
    /// Idempotent: running it again reuses the thing and its active
    /// certificate.
    Register {
        /// The VEN id = thing name (must equal the CSR's CN).
        #[arg(
            long,
            value_name = "VEN_ID",
            required_unless_present = "batch",
            conflicts_with = "batch"
        )]
        ven: Option<VenId>,
        /// The CSR made on the gateway.
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "batch",
            conflicts_with = "batch"
        )]
        csr: Option<PathBuf>,
        /// The bundle directory to write.
        #[arg(
            long,
            value_name = "BUNDLE",
            required_unless_present = "batch",
            conflicts_with = "batch"
        )]
        out: Option<PathBuf>,
        /// A CSV file `ven_id,csr,out` (with that header): many gateways,
        /// resumable (rows whose bundle exists are skipped).
        #[arg(long, value_name = "FILE")]
        batch: Option<PathBuf>,
    },
    /// Revoke a gateway's certificates (UpdateCertificate REVOKED) and
    /// detach them from the thing and the policy.
    Revoke {
        /// The VEN id = thing name.
        #[arg(long, value_name = "VEN_ID")]
        ven: VenId,
    },
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Create a CA in DIR (key mode 0600); refuses to overwrite one.
    Init {
        /// The CA directory (made if missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = gridlink_provision::pki::DEFAULT_CA_NAME)]
        name: String,
    },
    /// Write a fresh CRL (run before the old one's nextUpdate, yearly).
    RefreshCrl {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    // The AWS SDK brings rustls with aws-lc beside our ring: name the
    // process default so no rustls builder has to guess.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "one short arm per subcommand, read top to bottom"
)]
fn run(command: Command) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match command {
        Command::Ca {
            command: CaCommand::Init { dir, name },
        } => {
            let ca = CaDir::init(&dir, Some(&name))?;
            println!(
                "created CA {name:?} in {}: ca.pem (trust this), ca.key (mode 0600, keep it offline), crl.pem",
                ca.dir().display()
            );
        }
        Command::Ca {
            command: CaCommand::RefreshCrl { dir },
        } => {
            CaDir::open(&dir)?.refresh_crl()?;
            println!("wrote {}", dir.join("crl.pem").display());
        }
        Command::Sign {
            ca,
            csr,
            out,
            days,
            endpoint,
        } => {
            let mut ca = CaDir::open(&ca)?;
            let csr_pem =
                std::fs::read_to_string(&csr).map_err(|e| format!("{}: {e}", csr.display()))?;
            let (ven, cert_pem) = ca.sign_csr(&csr_pem, days)?;
            let files = Bundle {
                ven: ven.clone(),
                cert_pem,
                ca_pem: ca.ca().cert_pem().to_owned(),
                key_pem: None,
                endpoint,
            }
            .write(&out)?;
            println!("signed the CSR of {ven}; bundle written:");
            for file in files {
                println!("  {}", file.display());
            }
            println!(
                "copy it to the gateway next to key.pem and run `gridlink-agent run --config agent.toml`"
            );
        }
        Command::Issue {
            ca,
            ven,
            out,
            days,
            endpoint,
        } => {
            let mut ca = CaDir::open(&ca)?;
            let issued = ca.issue(&ven, days)?;
            eprintln!(
                "warning: the private key of {ven} was made here, not on the gateway; use this for bench setups only (keygen + sign in the field)"
            );
            let files = Bundle {
                ven: ven.clone(),
                cert_pem: issued.cert_pem,
                ca_pem: ca.ca().cert_pem().to_owned(),
                key_pem: Some(issued.key_pem),
                endpoint,
            }
            .write(&out)?;
            println!("issued a certificate and key for {ven}; bundle written:");
            for file in files {
                println!("  {}", file.display());
            }
        }
        Command::Revoke { ca, ven } => {
            let mut ca = CaDir::open(&ca)?;
            let count = ca.revoke(&ven)?;
            println!(
                "revoked {count} certificate(s) of {ven}; CRL written to {}; reload the broker (kill -HUP) to apply it",
                ca.crl_path().display()
            );
        }
        Command::BrokerConfig {
            ca,
            out,
            server_names,
            bind,
            port,
        } => {
            let ca = CaDir::open(&ca)?;
            let files = write_broker_config(
                &ca,
                &out,
                &BrokerOptions {
                    bind,
                    port,
                    server_names,
                },
            )?;
            println!(
                "wrote {} (run: mosquitto -c {}), {}, the broker's certificate {} and the cloud's client certificate {}",
                files.config.display(),
                files.config.display(),
                files.acl.display(),
                files.server_cert.display(),
                files.backend_cert.display()
            );
            println!(
                "the keys are mode 0600: make them readable by the user mosquitto runs as (chown mosquitto {})",
                files.server_key.display()
            );
        }
        #[cfg(feature = "aws")]
        Command::Aws { target, command } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            return runtime.block_on(aws::run(target, command));
        }
        #[cfg(feature = "cloud")]
        Command::RegisterVen {
            cloud,
            token,
            bundle,
            site,
            groups,
        } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(register_ven(&cloud, &token, &bundle, &site, &groups))?;
        }
        Command::Verify { bundle } => {
            let report = verify::verify(&bundle, time::OffsetDateTime::now_utc());
            for check in &report.checks {
                println!("{check}");
            }
            return Ok(if report.passed() {
                println!("all checks passed");
                ExitCode::SUCCESS
            } else {
                println!("some checks failed");
                ExitCode::FAILURE
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `register-ven`: registers, then prints the VEN and its loads as the
/// cloud shows them.
#[cfg(feature = "cloud")]
async fn register_ven(
    cloud: &str,
    token: &str,
    bundle: &std::path::Path,
    site: &str,
    groups: &[String],
) -> Result<(), gridlink_provision::register::RegisterError> {
    use gridlink_provision::register::{BundleSite, CloudClient};

    let bundle = BundleSite::read(bundle)?;
    let client = CloudClient::new(cloud, token)?;
    let ven = client.register(&bundle, site, groups).await?;
    println!(
        "registered {} at site {:?}; groups: {}",
        ven.ven_id,
        ven.site.unwrap_or_default(),
        if ven.groups.is_empty() {
            "none".to_owned()
        } else {
            ven.groups.join(", ")
        }
    );
    let loads = client.loads(&bundle.ven_id).await?;
    if loads.is_empty() {
        println!("loads: none");
    }
    for load in loads {
        println!(
            "load {}: {}{}{}",
            load.name,
            if load.on { "on" } else { "off" },
            load.power_w.map(|w| format!(", {w} W")).unwrap_or_default(),
            if load.controllable {
                ""
            } else {
                ", never switched"
            }
        );
    }
    Ok(())
}

#[cfg(feature = "aws")]
mod aws {
    use std::path::Path;
    use std::process::ExitCode;

    use gridlink_protocol::VenId;
    use gridlink_provision::aws::{AMAZON_ROOT_CA_1, AwsIot, read_batch};
    use gridlink_provision::bundle::{Bundle, Endpoint};
    use gridlink_provision::pki;

    use super::{AwsCommand, AwsTarget};

    type Error = Box<dyn std::error::Error>;

    pub(super) async fn run(target: AwsTarget, command: AwsCommand) -> Result<ExitCode, Error> {
        let iot = AwsIot::connect(target.endpoint_url.as_deref(), target.region.as_deref()).await;
        match command {
            AwsCommand::Register {
                batch: Some(batch), ..
            } => register_batch(&iot, &target.policy, &batch).await,
            AwsCommand::Register {
                ven: Some(ven),
                csr: Some(csr),
                out: Some(out),
                ..
            } => {
                if out.exists() {
                    return Err(format!(
                        "{} already exists; refusing to overwrite a bundle",
                        out.display()
                    )
                    .into());
                }
                let summary = register_one(&iot, &target.policy, &ven, &csr, &out).await?;
                println!("{ven}: {summary}; bundle written to {}", out.display());
                Ok(ExitCode::SUCCESS)
            }
            AwsCommand::Register { .. } => Err("give --ven, --csr and --out, or --batch".into()),
            AwsCommand::Revoke { ven } => {
                let count = iot.revoke(&ven, &target.policy).await?;
                if count == 0 {
                    return Err(format!("no certificate is attached to thing {ven}").into());
                }
                println!("revoked and detached {count} certificate(s) of {ven}");
                Ok(ExitCode::SUCCESS)
            }
        }
    }

    async fn register_one(
        iot: &AwsIot,
        policy: &str,
        ven: &VenId,
        csr: &Path,
        out: &Path,
    ) -> Result<String, Error> {
        let csr_pem =
            std::fs::read_to_string(csr).map_err(|e| format!("{}: {e}", csr.display()))?;
        // Check the CSR here, before AWS sees it: signature and CN = thing name.
        match pki::csr_common_name(&csr_pem)? {
            Some(cn) if cn == ven.as_str() => {}
            Some(cn) => {
                return Err(format!(
                    "{}: the CSR is for {cn:?}, not {:?}",
                    csr.display(),
                    ven.as_str()
                )
                .into());
            }
            None => return Err(format!("{}: the CSR has no CN", csr.display()).into()),
        }
        let done = iot.register(ven, &csr_pem, policy).await?;
        Bundle {
            ven: ven.clone(),
            cert_pem: done.certificate_pem.clone(),
            ca_pem: AMAZON_ROOT_CA_1.to_owned(),
            key_pem: None,
            endpoint: Endpoint {
                host: done.endpoint.clone(),
                port: 8883,
            },
        }
        .write(out)?;
        Ok(format!(
            "thing {}, certificate {} ({}), policy {}, endpoint {}",
            if done.thing_created {
                "created"
            } else {
                "existed"
            },
            done.certificate_id,
            if done.certificate_created {
                "created"
            } else {
                "reused"
            },
            if done.policy_created {
                "created"
            } else {
                "existed"
            },
            done.endpoint
        ))
    }

    async fn register_batch(iot: &AwsIot, policy: &str, batch: &Path) -> Result<ExitCode, Error> {
        let rows = read_batch(batch)?;
        let total = rows.len();
        let (mut done, mut skipped) = (0, 0);
        let mut failures = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let outcome =
                if row.out.join("cert.pem").exists() && row.out.join("agent.toml").exists() {
                    skipped += 1;
                    "skipped (bundle exists)".to_owned()
                } else {
                    let result = match VenId::new(row.ven.clone()) {
                        Ok(ven) => register_one(iot, policy, &ven, &row.csr, &row.out).await,
                        Err(e) => Err(format!("bad ven_id {:?}: {e}", row.ven).into()),
                    };
                    match result {
                        Ok(summary) => {
                            done += 1;
                            summary
                        }
                        Err(e) => {
                            failures.push(format!("line {}: {}: {e}", row.line, row.ven));
                            format!("FAILED: {e}")
                        }
                    }
                };
            let width = 20;
            let filled = (i + 1) * width / total.max(1);
            eprintln!(
                "[{}{}] {:>4}/{total} {}: {outcome}",
                "#".repeat(filled),
                "-".repeat(width - filled),
                i + 1,
                row.ven
            );
        }
        println!(
            "registered {done}, skipped {skipped} (done before), failed {}",
            failures.len()
        );
        for failure in &failures {
            println!("  {failure}");
        }
        Ok(if failures.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}
