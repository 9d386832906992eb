//! Ed25519 signing keys for evidence, through OpenSSL (already linked for TLS): the private
//! key is a PKCS#8 PEM file, exactly what `openssl genpkey -algorithm ed25519` writes, and
//! the public key a SubjectPublicKeyInfo PEM, which `openssl pkeyutl -verify -pubin` reads,
//! so an auditor checks a signature with the openssl command line alone.

use std::path::Path;

use openssl::pkey::{Id, PKey, Private, Public};
use openssl::sign::{Signer, Verifier};
use sha2::{Digest, Sha256};

use crate::Error;

/// The environment variable that may hold the private key's PEM text (instead of a file).
pub const KEY_ENV: &str = "PGDRILL_SIGNING_KEY";

/// A private signing key and what identifies it.
pub struct SigningKey {
    key: PKey<Private>,
    /// The PEM text, kept so that the caller can register it as a secret.
    pem: String,
    public: PublicKey,
}

/// A public key that checks signatures.
#[derive(Clone)]
pub struct PublicKey {
    key: PKey<Public>,
}

impl std::fmt::Debug for SigningKey {
    // Never the key itself, whatever prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(keyid {})", self.public().keyid())
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey(keyid {})", self.keyid())
    }
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<SigningKey, Error> {
        let key =
            PKey::generate_ed25519().map_err(|e| Error::environment(format!("generating an Ed25519 key: {e}")))?;
        let pem = key
            .private_key_to_pem_pkcs8()
            .map_err(|e| Error::environment(format!("encoding the Ed25519 key: {e}")))
            .map(|b| String::from_utf8_lossy(&b).into_owned())?;
        SigningKey::with_public(key, pem)
    }

    fn with_public(key: PKey<Private>, pem: String) -> Result<SigningKey, Error> {
        let public = key
            .public_key_to_der()
            .and_then(|der| PKey::public_key_from_der(&der))
            .map_err(|e| Error::environment(format!("deriving the Ed25519 public key: {e}")))?;
        Ok(SigningKey { key, pem, public: PublicKey { key: public } })
    }

    /// The key from its PEM text; `from` says where it came from, for the error (never the
    /// text itself).
    pub fn from_pem(pem: &str, from: &str) -> Result<SigningKey, Error> {
        let key = PKey::private_key_from_pem(pem.as_bytes()).map_err(|_| {
            Error::invalid(format!(
                "{from} holds no private key in PEM form: write one with `pgdrill keygen FILE` (or `openssl genpkey -algorithm ed25519`)"
            ))
        })?;
        if key.id() != Id::ED25519 {
            return Err(Error::invalid(format!(
                "{from} holds a key that is not Ed25519: write one with `pgdrill keygen FILE`"
            )));
        }
        SigningKey::with_public(key, pem.to_string())
    }

    /// The key from a file, refused when others may read it (the rule PostgreSQL applies to
    /// its own TLS key: owner only, or root's and group-readable for a group it gives to a
    /// service): a key readable by others may already be someone else's.
    pub fn from_file(path: &Path) -> Result<SigningKey, Error> {
        use std::os::unix::fs::MetadataExt as _;
        let shown = crate::util::one_line(&path.display().to_string()).into_owned();
        let meta =
            std::fs::metadata(path).map_err(|e| Error::invalid(format!("cannot read the signing key {shown}: {e}")))?;
        let loose = if meta.uid() == 0 { meta.mode() & 0o037 } else { meta.mode() & 0o077 };
        if loose != 0 {
            return Err(Error::invalid(format!(
                "the signing key {shown} may be read by others (mode {:04o}): `chmod 600 {}` (owner only), then sign with it; if others did read it, write a new one with `pgdrill keygen`",
                meta.mode() & 0o7777,
                crate::util::shell_quote(&path.display().to_string())
            )));
        }
        let pem = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid(format!("cannot read the signing key {shown}: {e}")))?;
        SigningKey::from_pem(&pem, &format!("the signing key file {shown}"))
    }

    /// The PEM text (a secret: register it with the redactor, never print it).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    pub fn public(&self) -> PublicKey {
        self.public.clone()
    }

    /// The raw 64-byte Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let mut s =
            Signer::new_without_digest(&self.key).map_err(|e| Error::environment(format!("signing evidence: {e}")))?;
        s.sign_oneshot_to_vec(message).map_err(|e| Error::environment(format!("signing evidence: {e}")))
    }
}

impl PublicKey {
    /// A public key from its PEM text; `from` names where it came from.
    pub fn from_pem(pem: &[u8], from: &str) -> Result<PublicKey, Error> {
        let key = PKey::public_key_from_pem(pem).map_err(|_| {
            Error::invalid(format!("{from} holds no public key in PEM form (`-----BEGIN PUBLIC KEY-----`)"))
        })?;
        if key.id() != Id::ED25519 {
            return Err(Error::invalid(format!("{from} holds a public key that is not Ed25519")));
        }
        Ok(PublicKey { key })
    }

    pub fn from_file(path: &Path) -> Result<PublicKey, Error> {
        let shown = crate::util::one_line(&path.display().to_string()).into_owned();
        let pem =
            std::fs::read(path).map_err(|e| Error::invalid(format!("cannot read the public key {shown}: {e}")))?;
        PublicKey::from_pem(&pem, &format!("the public key file {shown}"))
    }

    /// The SubjectPublicKeyInfo PEM (`openssl pkeyutl -pubin` reads it).
    pub fn pem(&self) -> String {
        self.key.public_key_to_pem().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// The key's id in envelopes: the sha256 of its DER encoding, hex (what `openssl pkey
    /// -pubin -outform DER | openssl dgst -sha256` prints).
    pub fn keyid(&self) -> String {
        hex(&Sha256::digest(self.key.public_key_to_der().unwrap_or_default()))
    }

    /// Whether `signature` is this key's over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        Verifier::new_without_digest(&self.key).and_then(|mut v| v.verify_oneshot(signature, message)).unwrap_or(false)
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_key_only() {
        let k = SigningKey::generate().expect("key");
        let other = SigningKey::generate().expect("key");
        let sig = k.sign(b"statement").expect("sign");
        assert_eq!(sig.len(), 64);
        assert!(k.public().verify(b"statement", &sig));
        assert!(!k.public().verify(b"statement!", &sig));
        assert!(!other.public().verify(b"statement", &sig));
        let back = SigningKey::from_pem(k.pem(), "test").expect("pem reads back");
        assert_eq!(back.public().keyid(), k.public().keyid());
        let public = PublicKey::from_pem(k.public().pem().as_bytes(), "test").expect("public pem");
        assert_eq!(public.keyid(), k.public().keyid());
        assert!(!format!("{k:?}").contains("PRIVATE"), "Debug shows the key");
    }

    #[test]
    fn a_key_that_is_not_ed25519_is_refused_by_name() {
        let rsa = openssl::rsa::Rsa::generate(2048).and_then(PKey::from_rsa).expect("rsa");
        let pem = String::from_utf8(rsa.private_key_to_pem_pkcs8().expect("pem")).expect("utf8");
        let e = SigningKey::from_pem(&pem, "the signing key file k.pem").expect_err("refused");
        assert!(e.to_string().contains("not Ed25519"), "{e}");
        let e = SigningKey::from_pem("garbage", "PGDRILL_SIGNING_KEY").expect_err("refused");
        assert!(e.to_string().contains("PGDRILL_SIGNING_KEY") && e.to_string().contains("pgdrill keygen"), "{e}");
    }

    /// A private key file that group or others may read was used to sign (the key had
    /// perhaps leaked already): it is refused, naming the file and the chmod that fixes it.
    #[test]
    fn a_signing_key_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let t = tempfile::tempdir().expect("tmp");
        let path = t.path().join("it's key.pem");
        let k = SigningKey::generate().expect("key");
        std::fs::write(&path, k.pem()).expect("write");
        for mode in [0o644, 0o660, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let e = SigningKey::from_file(&path).expect_err("a loose key file is accepted");
            let e = e.to_string();
            assert!(e.contains("may be read by others") && e.contains("chmod 600 '"), "{e}");
            assert!(!e.contains("PRIVATE"), "{e}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(SigningKey::from_file(&path).expect("0600 reads").public().keyid(), k.public().keyid());
    }
}
