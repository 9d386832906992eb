//! TLS for the connections pgdrill makes itself, with libpq's meaning of every setting.
//!
//! OpenSSL (through postgres-openssl) rather than rustls: libpq is built on OpenSSL, and
//! parity needs what it does: verify-ca checks the chain but not the host name (rustls has
//! no supported way to verify a chain without the name), client keys encrypted with a
//! passphrase in the traditional PEM forms psql accepts, and CRL files checked by the same
//! code as libpq's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

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
    let full = ci.ssl_mode() == SslMode::VerifyFull;
    let mut c = MakeTlsConnector::new(ssl_connector(ci)?);
    c.set_callback(move |cfg, _host| {
        // Only verify-full compares the certificate with the host name.
        cfg.set_verify_hostname(full);
        Ok(())
    });
    Ok(c)
}

/// The OpenSSL contexts this process has built, by what they were built from (`built_from`).
/// OpenSSL's connector builder loads the system's CA file whatever the settings (about 140
/// certificates parsed), and pgdrill built one per connection: a small verify opened 18 to
/// its throwaway server alone (issue 41). Only a context that was built whole is kept; a
/// setting that fails is read, and fails, again on the next connection.
static BUILT: LazyLock<Mutex<HashMap<String, SslConnector>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// The OpenSSL context for `ci`'s TLS settings, built once per process for the same settings
/// and the same files.
pub fn ssl_connector(ci: &Conninfo) -> Result<SslConnector, Failure> {
    let key = built_from(ci);
    if let Some(c) = BUILT.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(c);
    }
    let c = build(ci)?;
    if let Ok(mut m) = BUILT.lock() {
        m.insert(key, c.clone());
    }
    Ok(c)
}

/// What a context is built from: the mode, each file setting with the file as it is now
/// (size, modification time, inode: a certificate or CRL replaced on disk is read again),
/// and a digest of the key's passphrase (never the passphrase itself).
fn built_from(ci: &Conninfo) -> String {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    let stamp = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => format!("{} {} {} {} {}", p.display(), m.len(), m.mtime(), m.mtime_nsec(), m.ino()),
        Err(_) => format!("{} absent", p.display()),
    };
    let mut key = format!("mode={}\n", ci.ssl_mode().as_str());
    for (setting, default_name) in
        [("sslrootcert", "root.crt"), ("sslcert", "postgresql.crt"), ("sslkey", "postgresql.key")]
    {
        let file = file_setting(ci, setting, default_name).map(|(p, _)| stamp(&p)).unwrap_or_default();
        key.push_str(&format!("{setting}={file}\n"));
    }
    let crl = ci.get("sslcrl").filter(|v| !v.is_empty()).map(|v| stamp(Path::new(v))).unwrap_or_default();
    key.push_str(&format!("sslcrl={crl}\n"));
    if let Some(pw) = ci.get("sslpassword") {
        key.push_str(&format!("sslpassword={}\n", crate::archive::hex(&Sha256::digest(pw.as_bytes()))));
    }
    key
}

/// Build the context for `ci`'s TLS settings.
fn build(ci: &Conninfo) -> Result<SslConnector, Failure> {
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
    Ok(b.build())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA certificate named `cn`, written to `path` (through a rename: a file
    /// replaced as an operator's tools replace it).
    fn ca_file(path: &Path, cn: &str) {
        use openssl::asn1::Asn1Time;
        use openssl::ec::{EcGroup, EcKey};
        use openssl::hash::MessageDigest;
        use openssl::nid::Nid;
        use openssl::x509::{X509Builder, X509NameBuilder};
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("curve");
        let key = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("key");
        let mut name = X509NameBuilder::new().expect("name");
        name.append_entry_by_text("CN", cn).expect("name");
        let name = name.build();
        let mut b = X509Builder::new().expect("cert");
        b.set_version(2).expect("cert");
        b.set_subject_name(&name).expect("cert");
        b.set_issuer_name(&name).expect("cert");
        b.set_pubkey(&key).expect("cert");
        b.set_not_before(&Asn1Time::days_from_now(0).expect("time")).expect("cert");
        b.set_not_after(&Asn1Time::days_from_now(1).expect("time")).expect("cert");
        b.sign(&key, MessageDigest::sha256()).expect("sign");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, b.build().to_pem().expect("pem")).expect("write");
        std::fs::rename(&tmp, path).expect("rename");
    }

    fn cas_of(c: &SslConnector) -> Vec<String> {
        let mut names: Vec<String> = c
            .context()
            .cert_store()
            .all_certificates()
            .iter()
            .flat_map(|x| x.subject_name().entries().map(|e| e.data().to_string()).collect::<Vec<_>>())
            .filter_map(Result::ok)
            .collect();
        names.sort();
        names
    }

    /// Every connection pgdrill opened built a TLS context of its own, and OpenSSL's builder
    /// loads the system's CA file each time: 18 loads for a small verify's throwaway server
    /// alone. The same settings and files now share one context per process; a CA file
    /// replaced on disk, or other settings, still get a context of their own.
    #[test]
    fn the_system_ca_file_was_loaded_again_for_every_connection() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ca = tmp.path().join("root.crt");
        ca_file(&ca, "first CA");
        let url = format!("host=127.0.0.1 sslmode=verify-ca sslrootcert={}", ca.display());
        let none = |_: &str| None;
        let ci = Conninfo::resolve_with(&url, &none).expect("conninfo");
        let a = ssl_connector(&ci).expect("built");
        let b = ssl_connector(&ci).expect("built");
        assert!(std::ptr::eq(a.context(), b.context()), "the same settings built a second context");
        assert!(cas_of(&a).contains(&"first CA".to_string()), "{:?}", cas_of(&a));

        ca_file(&ca, "second CA");
        let c = ssl_connector(&Conninfo::resolve_with(&url, &none).expect("conninfo")).expect("built");
        assert!(!std::ptr::eq(a.context(), c.context()), "a replaced CA file was served from the first context");
        assert!(cas_of(&c).contains(&"second CA".to_string()), "{:?}", cas_of(&c));
        assert!(!cas_of(&c).contains(&"first CA".to_string()), "{:?}", cas_of(&c));

        let full = format!("{url} sslmode=verify-full");
        let d = ssl_connector(&Conninfo::resolve_with(&full, &none).expect("conninfo")).expect("built");
        assert!(!std::ptr::eq(c.context(), d.context()), "another mode shared a context");

        // A setting that fails is not kept: it fails again, naming the file.
        std::fs::remove_file(&ca).expect("remove");
        let gone = ssl_connector(&Conninfo::resolve_with(&url, &none).expect("conninfo"));
        assert!(gone.is_err_and(|e| e.message.contains("does not exist")), "a missing CA file was not refused");
    }
}
