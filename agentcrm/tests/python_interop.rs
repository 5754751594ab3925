#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Interoperability with the official Python `standardwebhooks` library: it
//! signs, the gateway verifies. The library is installed from PyPI into a
//! virtual environment under the target directory, once. Without network the
//! test skips with a message, except under CI (`CI` set), where it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Node;

const STANDARDWEBHOOKS: &str = "standardwebhooks==1.1.0";

/// A virtual environment with `packages`, created once per target directory.
pub(crate) fn python_env(name: &str, packages: &[&str]) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let python = dir.join("bin/python");
    let marker = dir.join(".installed");
    if marker.is_file() {
        return Some(python);
    }
    let created = Command::new("python3").arg("-m").arg("venv").arg(&dir).status();
    let installed = created.is_ok_and(|status| status.success())
        && Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(packages)
            .status()
            .is_ok_and(|status| status.success());
    if !installed {
        if std::env::var_os("CI").is_some() {
            panic!("cannot install {packages:?} from PyPI under CI");
        }
        eprintln!("SKIPPED: cannot install {packages:?} from PyPI (no network?)");
        return None;
    }
    std::fs::write(&marker, packages.join("\n")).unwrap();
    Some(python)
}

#[test]
fn official_standardwebhooks_signer_is_accepted() {
    let Some(python) = python_env("py-standardwebhooks", &[STANDARDWEBHOOKS]) else { return };
    let mut node = Node::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gateway/tests/python/standardwebhooks_client.py");
    let output = Command::new(python)
        .arg(script)
        .arg(node.url(""))
        .arg(&node.default_secret)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python client failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
    node.stop();
    // Two identical deliveries and three refused ones: exactly one item kept,
    // still queued or already masked into the log by the node's masking agent.
    let queued = common::intake_event_ids(&node.data_dir());
    let logged = common::log_event_ids(&node.data_dir());
    assert_eq!(queued.len() + logged.len(), 1, "queued {queued:?}, logged {logged:?}");
}
