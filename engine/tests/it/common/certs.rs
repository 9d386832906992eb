//! Certificates for the tests' own TLS servers and timestamp authority, made with the real
//! openssl command line in a test's folder.

use std::path::Path;
use std::process::Command;

/// Sign the request `csr` with the test CA in `dir` (`ca.pem`, `ca.key`) into `pem`, valid
/// for two days, with the extensions in the file `extfile`; openssl failing fails the test.
pub fn ca_sign(dir: &Path, csr: &str, pem: &str, extfile: &str) {
    let args = [
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        pem,
        "-days",
        "2",
        "-extfile",
        extfile,
    ];
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(out.status.success(), "openssl {}: {}", args.join(" "), super::text(&out.stderr));
}
