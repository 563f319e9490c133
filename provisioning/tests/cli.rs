//! The `gridlink-provision` binary as a user first meets it: `--help`
//! names every subcommand of a default build (the own CA, AWS IoT and the
//! cloud), `--version` answers, and an unknown subcommand is a usage error
//! (exit 2).
//!
//! The CLI's tests against real peers (Mosquitto from `broker-config`,
//! moto for AWS IoT, the cloud for `register-ven`) are in gridlink-e2e
//! (`e2e/tests/provision_*.rs`): they need testkit, which depends on this
//! crate. They run the binary this crate builds; this integration test is
//! also what makes `cargo test` / `cargo nextest run --workspace` build
//! it (cargo builds a package's binaries for its integration tests).

use std::process::{Command, Output};

fn provision(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridlink-provision"))
        .args(args)
        .output()
        .expect("run gridlink-provision")
}

#[test]
fn help_names_every_subcommand_and_bad_usage_exits_2() {
    let help = provision(&["--help"]);
    assert!(help.status.success(), "{help:?}");
    let text = String::from_utf8(help.stdout).expect("UTF-8 help");
    let mut names = vec!["ca", "sign", "broker-config", "verify"];
    if cfg!(feature = "cloud") {
        names.push("register-ven");
    }
    if cfg!(feature = "aws") {
        names.push("aws");
    }
    for name in names {
        assert!(
            text.lines()
                .any(|line| line.trim_start().starts_with(&format!("{name} "))),
            "`{name}` missing from --help:\n{text}"
        );
    }

    let version = provision(&["--version"]);
    assert!(version.status.success(), "{version:?}");
    assert!(
        String::from_utf8_lossy(&version.stdout).starts_with("gridlink-provision "),
        "{version:?}"
    );

    let unknown = provision(&["no-such-command"]);
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
}
