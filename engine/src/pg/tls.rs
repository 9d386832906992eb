//! TLS for the connections pgdrill makes itself, with libpq's meaning of every setting.
//!
//! OpenSSL (through postgres-openssl) rather than rustls: libpq is built on OpenSSL, and
//! parity needs what it does: verify-ca checks the chain but not the host name (rustls has
//! no supported way to verify a chain without the name), client keys encrypted with a
//! passphrase in the traditional PEM forms psql accepts, and CRL files checked by the same
//! code as libpq's.

use std::path::{Path, PathBuf};

use openssl::pkey::PKey;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::store::X509Lookup;
use openssl::x509::verify::X509VerifyFlags;
use postgres_openssl::MakeTlsConnector;

use super::conninfo::{Conninfo, SslMode};
use crate::error::Failure;

/// A file setting and where libpq would look without it (`~/.postgresql/NAME`).
fn file_setting(ci: &Conninfo, key: &str, default_name: &str) -> Option<(PathBuf, bool)> {
    match ci.get(key).filter(|v| !v.is_empty()) {
        Some(v) => Some((PathBuf::from(v), true)),
        None => {
            let home = std::env::var_os("HOME")?;
            let p = Path::new(&home).join(".postgresql").join(default_name);
            p.exists().then_some((p, false))
        }
    }
}

fn origin(ci: &Conninfo, key: &str) -> String {
    ci.origin(key).map(|o| format!(" (from {o})")).unwrap_or_default()
}

/// Whether the server certificate is checked against a CA: always under verify-ca and
/// verify-full, and under the weaker modes when a root certificate file exists (libpq:
/// "require with a root certificate behaves like verify-ca").
pub fn verifies(ci: &Conninfo) -> bool {
    ci.ssl_mode() >= SslMode::VerifyCa || file_setting(ci, "sslrootcert", "root.crt").is_some()
}

/// The connector for `ci`'s TLS settings.
pub fn connector(ci: &Conninfo) -> Result<MakeTlsConnector, Failure> {
    let err = |what: String| move |e: openssl::error::ErrorStack| Failure::environment(format!("{what}: {e}"));
    let mode = ci.ssl_mode();
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(err("cannot set up TLS".into()))?;
    let root = file_setting(ci, "sslrootcert", "root.crt");
    if verifies(ci) {
        match &root {
            Some((p, _)) if p.as_os_str() == "system" => {
                b.set_default_verify_paths().map_err(err("cannot load the system's CA certificates".into()))?
            }
            Some((p, _)) => {
                if !p.is_file() {
                    return Err(Failure::environment(format!(
                        "sslrootcert={}{} does not exist: point sslrootcert at the CA certificate of the server",
                        p.display(),
                        origin(ci, "sslrootcert")
                    )));
                }
                b.set_ca_file(p).map_err(err(format!("cannot read sslrootcert={}", p.display())))?;
            }
            None => {
                return Err(Failure::environment(format!(
                    "sslmode={}{} needs a root certificate: set sslrootcert (or PGSSLROOTCERT) to the CA that signed the server certificate",
                    mode.as_str(),
                    origin(ci, "sslmode")
                )))
            }
        }
        b.set_verify(SslVerifyMode::PEER);
        if let Some(crl) = ci.get("sslcrl").filter(|v| !v.is_empty()) {
            let path = Path::new(crl);
            if !path.is_file() || path.to_str().is_none() {
                return Err(Failure::environment(format!(
                    "sslcrl={crl}{} is not a readable file",
                    origin(ci, "sslcrl")
                )));
            }
            let store = b.cert_store_mut();
            let lookup = store.add_lookup(X509Lookup::file()).map_err(err("cannot set up the CRL lookup".into()))?;
            lookup.load_crl_file(path, SslFiletype::PEM).map_err(err(format!("cannot read sslcrl={crl}")))?;
            store.set_flags(X509VerifyFlags::CRL_CHECK).map_err(err("cannot enable the CRL check".into()))?;
        }
    } else {
        b.set_verify(SslVerifyMode::NONE);
    }
    if let Some((cert, _)) = file_setting(ci, "sslcert", "postgresql.crt") {
        b.set_certificate_chain_file(&cert).map_err(err(format!(
            "cannot read sslcert={}{}",
            cert.display(),
            origin(ci, "sslcert")
        )))?;
        let Some((key, _)) = file_setting(ci, "sslkey", "postgresql.key") else {
            return Err(Failure::environment(format!(
                "sslcert={} has no key: set sslkey to its private key file",
                cert.display()
            )));
        };
        let pem = std::fs::read(&key).map_err(|e| {
            Failure::environment(format!("cannot read sslkey={}{}: {e}", key.display(), origin(ci, "sslkey")))
        })?;
        let pkey = match ci.get("sslpassword") {
            Some(pw) => PKey::private_key_from_pem_passphrase(&pem, pw.as_bytes()).map_err(|_| {
                Failure::environment(format!("cannot decrypt sslkey={} with the sslpassword given", key.display()))
            })?,
            // A callback that offers no passphrase: an encrypted key fails here rather than
            // OpenSSL prompting on the terminal.
            None => PKey::private_key_from_pem_callback(&pem, |_| Ok(0)).map_err(|_| {
                Failure::environment(format!(
                    "cannot read sslkey={}: it is not a PEM private key, or it is encrypted and needs sslpassword",
                    key.display()
                ))
            })?,
        };
        b.set_private_key(&pkey).map_err(err(format!("sslkey={} does not fit sslcert", key.display())))?;
        b.check_private_key().map_err(err(format!("sslkey={} does not fit sslcert", key.display())))?;
    }
    let full = mode == SslMode::VerifyFull;
    let mut c = MakeTlsConnector::new(b.build());
    c.set_callback(move |cfg, _host| {
        // Only verify-full compares the certificate with the host name.
        cfg.set_verify_hostname(full);
        Ok(())
    });
    Ok(c)
}

/// A failed connection explained in one line naming the setting to change. `text` is the
/// library's description (never holds the password).
pub fn explain(ci: &Conninfo, text: &str) -> Option<String> {
    let host = ci.hosts().into_iter().next().unwrap_or_default();
    let root = ci.get("sslrootcert").unwrap_or("~/.postgresql/root.crt");
    let t = text.to_ascii_lowercase();
    if t.contains("hostname mismatch") || t.contains("ip address mismatch") {
        return Some(format!(
            "the server certificate does not name host `{host}` (sslmode=verify-full{}): connect by a name the certificate lists, or use sslmode=verify-ca",
            origin(ci, "sslmode")
        ));
    }
    if t.contains("certificate revoked") {
        return Some(format!("the server certificate is revoked by sslcrl={}", ci.get("sslcrl").unwrap_or_default()));
    }
    if t.contains("unable to get local issuer")
        || t.contains("self-signed certificate")
        || t.contains("self signed certificate")
        || t.contains("unable to verify the first certificate")
        || t.contains("certificate signature failure")
    {
        return Some(format!(
            "the server certificate is not signed by a CA in sslrootcert={root}{}: point sslrootcert at the CA that signed it",
            origin(ci, "sslrootcert")
        ));
    }
    if t.contains("unable to get certificate crl") {
        return Some(format!(
            "sslcrl has no CRL for the server's CA: add it to sslcrl={}",
            ci.get("sslcrl").unwrap_or("")
        ));
    }
    if t.contains("server does not support tls") || t.contains("server does not support ssl") {
        return Some(format!(
            "the server at `{host}` does not offer TLS, but sslmode={}{} requires it: enable ssl on the server, or lower sslmode",
            ci.ssl_mode().as_str(),
            origin(ci, "sslmode")
        ));
    }
    if t.contains("requires a valid client certificate")
        || t.contains("certificate authentication failed")
        || t.contains("alert unknown ca")
        || t.contains("alert certificate required")
        || t.contains("alert bad certificate")
        || t.contains("alert certificate unknown")
        || t.contains("no pg_hba.conf entry") && t.contains("ssl encryption")
    {
        return Some(format!(
            "the server refused the client certificate (sslcert={}{}, sslkey={}): use a certificate signed by the server's ssl_ca_file whose CN is the user `{}`",
            ci.get("sslcert").unwrap_or("~/.postgresql/postgresql.crt"),
            origin(ci, "sslcert"),
            ci.get("sslkey").unwrap_or("~/.postgresql/postgresql.key"),
            ci.user()
        ));
    }
    None
}
