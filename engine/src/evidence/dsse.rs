//! DSSE envelopes (Dead Simple Signing Envelope, secure-systems-lab/dsse, v1): a payload, its
//! type, and signatures over the pre-authentication encoding (PAE) of both, so that a
//! signature over one type of payload can never be read as one over another.
//!
//! An envelope file is written in one canonical form (pretty JSON, fields in this order, a
//! final newline), and read back only if its bytes are exactly that form: every byte of a
//! record is then covered, by its signature or by the digest its successor signs.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::keys::{PublicKey, SigningKey};
use crate::Error;

/// An in-toto statement's payload type.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The payload, standard base64.
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<Signature>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub keyid: String,
    /// The raw Ed25519 signature, standard base64.
    pub sig: String,
}

/// The pre-authentication encoding: `DSSEv1 LEN(type) type LEN(body) body`, lengths in ASCII
/// decimal bytes, one space between fields.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// `payload` of `payload_type`, signed with `key`.
    pub fn sign(payload_type: &str, payload: &[u8], key: &SigningKey) -> Result<Envelope, Error> {
        let sig = key.sign(&pae(payload_type, payload))?;
        Ok(Envelope {
            payload: STANDARD.encode(payload),
            payload_type: payload_type.to_string(),
            signatures: vec![Signature { keyid: key.public().keyid(), sig: STANDARD.encode(sig) }],
        })
    }

    /// The envelope as its file holds it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = serde_json::to_vec_pretty(self).unwrap_or_default();
        b.push(b'\n');
        b
    }

    /// An envelope from its file's bytes, refused unless they are exactly the canonical form
    /// (an edit that keeps the JSON valid, such as a changed key id or added spaces, is
    /// still an edit).
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope, String> {
        let e: Envelope = serde_json::from_slice(bytes).map_err(|e| format!("not a DSSE envelope: {e}"))?;
        if e.to_bytes() != bytes {
            return Err("its bytes are not those pgdrill wrote (edited)".into());
        }
        Ok(e)
    }

    /// The decoded payload.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, String> {
        STANDARD.decode(&self.payload).map_err(|e| format!("its payload is not base64: {e}"))
    }

    /// The payload, if one signature is `key`'s over its PAE; else why not.
    pub fn verify(&self, key: &PublicKey) -> Result<Vec<u8>, String> {
        let payload = self.payload_bytes()?;
        let message = pae(&self.payload_type, &payload);
        let keyid = key.keyid();
        let mut others = Vec::new();
        for s in &self.signatures {
            let Ok(sig) = STANDARD.decode(&s.sig) else { continue };
            if key.verify(&message, &sig) {
                // The key id is not signed: one that does not name the key that signed is an
                // edit of the file.
                if s.keyid != keyid {
                    return Err(format!("its key id was edited (says {}, the signing key is {keyid})", s.keyid));
                }
                return Ok(payload);
            }
            if s.keyid != keyid {
                others.push(s.keyid.clone());
            }
        }
        if !others.is_empty() {
            return Err(format!(
                "signed with another key (keyid {}), not the public key given (keyid {keyid})",
                others.join(", ")
            ));
        }
        Err(format!("its signature does not verify with the public key (keyid {keyid}): payload or signature edited"))
    }

    /// The first signature, raw (for the auditor's files).
    pub fn signature_bytes(&self) -> Vec<u8> {
        self.signatures.first().and_then(|s| STANDARD.decode(&s.sig).ok()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoding the DSSE protocol gives as its example.
    #[test]
    fn pae_is_the_protocol_s_encoding() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn an_envelope_round_trips_and_any_edit_is_refused() {
        let k = SigningKey::generate().expect("key");
        let e = Envelope::sign(IN_TOTO, b"{\"a\":1}", &k).expect("sign");
        let bytes = e.to_bytes();
        let back = Envelope::from_bytes(&bytes).expect("reads back");
        assert_eq!(back.verify(&k.public()).expect("verifies"), b"{\"a\":1}");
        // Another key: named as such.
        let other = SigningKey::generate().expect("key");
        let resigned = Envelope::sign(IN_TOTO, b"{\"a\":1}", &other).expect("sign");
        assert!(resigned.verify(&k.public()).expect_err("refused").contains("another key"));
        // A changed payload type is not the signed one.
        let mut t = back.clone();
        t.payload_type = "text/plain".into();
        assert!(t.verify(&k.public()).is_err());
        // Every byte: flip each one, none is accepted.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let ok = Envelope::from_bytes(&b).ok().and_then(|e| e.verify(&k.public()).ok());
            assert!(ok.is_none(), "byte {i} edited and accepted");
        }
    }
}
