//! A signed JSON webhook: the run's facts POSTed as a Standard Webhooks message
//! (www.standardwebhooks.com, version 1.0.0), so a receiver that holds the shared secret can
//! prove an alert came from pgdrill and is not a replay, whoever else learned its URL. The
//! body is `{"type": "pgdrill.run.<outcome>", "timestamp": RFC 3339, "data": the facts the
//! JSON webhook sends}`; three headers carry the message's id, its time (Unix seconds) and
//! `v1,` followed by the base64 of HMAC-SHA256(secret, `ID.TIMESTAMP.BODY`), exactly the
//! bytes sent. The receivers' libraries (svix, standardwebhooks) check it as written here.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::runbook::notify::SignedWebhook;

/// The prefix the receivers' libraries put before the base64 of a secret.
const SECRET_PREFIX: &str = "whsec_";

/// What is POSTed: the body and its three headers.
pub(super) struct Signed {
    pub body: String,
    pub headers: Vec<(String, String)>,
}

/// The URL to POST to, and the signing key, from the variables the configuration names;
/// `Err` says what is missing or wrong without showing a value.
pub(in crate::report) fn target(h: &SignedWebhook) -> Result<(String, Vec<u8>), String> {
    let var = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
    let url = match (&h.url, &h.url_env) {
        (Some(u), _) => u.clone(),
        (None, Some(v)) => var(v).ok_or_else(|| format!("{v} is not set"))?,
        (None, None) => return Err("no URL".into()),
    };
    let secret = var(&h.secret_env).ok_or_else(|| format!("{} is not set", h.secret_env))?;
    let key = key_of(&secret).ok_or_else(|| {
        format!(
            "{} does not hold a Standard Webhooks secret (`whsec_` and base64, as the receiver's library makes it)",
            h.secret_env
        )
    })?;
    Ok((url, key))
}

/// The HMAC key of a secret: the bytes its base64 (after `whsec_`) stands for. A secret that
/// is not base64 is refused rather than used as text: the receiver would decode it, and
/// every alert would fail its check without a word on this side.
fn key_of(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok().filter(|k| !k.is_empty())
}

/// The message for `data` (the run's facts), outcome `outcome`, sent at `now`, signed with
/// `key`. The id is new for every message: receivers drop a second delivery of one id.
pub(super) fn message(data: Value, outcome: &str, key: &[u8], now: time::OffsetDateTime) -> Result<Signed, String> {
    let mut random = [0u8; 16];
    openssl::rand::rand_bytes(&mut random).map_err(|e| format!("no random id: {e}"))?;
    let id = format!("msg_{}", crate::archive::hex(&random));
    let timestamp = now.unix_timestamp().to_string();
    // The type is one word a receiver routes on: outcomes are `passed`, `failed`, `interrupted`.
    let body = json!({
        "type": format!("pgdrill.run.{outcome}"),
        "timestamp": crate::util::rfc3339(now.replace_nanosecond(0).unwrap_or(now)),
        "data": data,
    })
    .to_string();
    let signature = sign(key, &id, &timestamp, &body)?;
    Ok(Signed {
        body,
        headers: vec![
            ("webhook-id".into(), id),
            ("webhook-timestamp".into(), timestamp),
            ("webhook-signature".into(), format!("v1,{signature}")),
        ],
    })
}

/// base64(HMAC-SHA256(key, `id.timestamp.body`)).
fn sign(key: &[u8], id: &str, timestamp: &str, body: &str) -> Result<String, String> {
    let k = openssl::pkey::PKey::hmac(key).map_err(|e| format!("HMAC: {e}"))?;
    let mut s =
        openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &k).map_err(|e| format!("HMAC: {e}"))?;
    s.update(format!("{id}.{timestamp}.{body}").as_bytes()).map_err(|e| format!("HMAC: {e}"))?;
    let mac = s.sign_to_vec().map_err(|e| format!("HMAC: {e}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature is the one the specification's own example gives (the Standard
    /// Webhooks repository's test vector: secret, id, timestamp and body as published), so a
    /// receiver's library accepts what this sends.
    #[test]
    fn the_signature_is_the_specification_s_for_its_example() {
        let key = key_of("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("key");
        let sig = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", r#"{"test": 2432232314}"#).expect("sign");
        assert_eq!(sig, "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    /// A message: its headers sign exactly its body; a secret that is not base64 is refused.
    #[test]
    fn a_message_signs_its_own_body_and_a_secret_not_base64_is_refused() {
        let key = key_of("whsec_c2VjcmV0LWtleS1ieXRlcw==").expect("key");
        assert_eq!(key, b"secret-key-bytes");
        let now = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        let m = message(json!({ "runbook": "verify" }), "failed", &key, now).expect("message");
        let h = |n: &str| m.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default();
        assert_eq!(h("webhook-timestamp"), "1700000000");
        assert!(h("webhook-id").starts_with("msg_"));
        let want = sign(&key, &h("webhook-id"), "1700000000", &m.body).expect("sign");
        assert_eq!(h("webhook-signature"), format!("v1,{want}"));
        let body: Value = serde_json::from_str(&m.body).expect("json");
        assert_eq!(
            (body["type"].as_str(), body["data"]["runbook"].as_str()),
            (Some("pgdrill.run.failed"), Some("verify"))
        );
        assert_eq!(body["timestamp"], "2023-11-14T22:13:20Z");
        assert!(key_of("whsec_not base64!").is_none());
        assert!(key_of("").is_none());
    }
}
