//! `pgdrill evidence publish`: copy an evidence log into an S3 bucket with Object Lock, each
//! object written with a retention (governance or compliance mode, until a date), so that no
//! one, pgdrill included, can delete or overwrite a record before the period ends. Refused
//! when the bucket has no Object Lock configuration: a copy that can be deleted is no
//! better than the local one.
//!
//! The object_store crate behind `storage/` cannot set retention headers, so this is a small
//! S3 client of its own (AWS Signature Version 4 through OpenSSL's HMAC), for these requests
//! only: the bucket's lock configuration, HEAD and PUT of one object. Credentials come from
//! the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL` for an S3-compatible server, path-style there).

use std::path::Path;
use std::time::Duration;

use openssl::hash::{hash, MessageDigest};
use openssl::pkey::PKey;
use openssl::sign::Signer;

use super::keys::{hex, sha256_hex};
use super::log::{record_name, CHECKPOINT, PUBLIC_KEY, RECORDS};
use crate::Error;

/// Object Lock retention mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Users with a special permission may still shorten or remove it.
    Governance,
    /// No one can, the root account included, until the date.
    Compliance,
}

impl Mode {
    fn header(self) -> &'static str {
        match self {
            Mode::Governance => "GOVERNANCE",
            Mode::Compliance => "COMPLIANCE",
        }
    }
}

struct S3 {
    client: reqwest::Client,
    /// `https://host[:port]` and whether the bucket goes in the path.
    endpoint: String,
    path_style: bool,
    bucket: String,
    region: String,
    access_key: String,
    secret: String,
    token: Option<String>,
}

fn hmac(key: &[u8], data: &[u8]) -> Result<Vec<u8>, Error> {
    let k = PKey::hmac(key).map_err(|e| Error::environment(format!("HMAC: {e}")))?;
    let mut s = Signer::new(MessageDigest::sha256(), &k).map_err(|e| Error::environment(format!("HMAC: {e}")))?;
    s.update(data).and_then(|_| s.sign_to_vec()).map_err(|e| Error::environment(format!("HMAC: {e}")))
}

/// A path segment or query value as SigV4 encodes it: unreserved characters as they are,
/// everything else percent-encoded.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl S3 {
    fn from_env(bucket: &str) -> Result<S3, Error> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (Some(access_key), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) else {
            return Err(Error::invalid(
                "evidence publish needs S3 credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones)",
            ));
        };
        let region = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")).unwrap_or_else(|| "us-east-1".into());
        let (endpoint, path_style) = match var("AWS_ENDPOINT_URL").or_else(|| var("AWS_ENDPOINT")) {
            Some(e) => (e.trim_end_matches('/').to_string(), true),
            None => (format!("https://{bucket}.s3.{region}.amazonaws.com"), false),
        };
        if endpoint.starts_with("http://") && var("AWS_ALLOW_HTTP").is_none_or(|v| v != "true") {
            return Err(Error::invalid(format!(
                "{endpoint} is plain HTTP: set AWS_ALLOW_HTTP=true to allow it (a local S3-compatible server)"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::environment(format!("an HTTP client: {e}")))?;
        Ok(S3 {
            client,
            endpoint,
            path_style,
            bucket: bucket.into(),
            region,
            access_key,
            secret,
            token: var("AWS_SESSION_TOKEN"),
        })
    }

    /// A signed request: `key` within the bucket ("" for the bucket), `query` already in
    /// canonical form (sorted, encoded), `headers` (lower-case names) signed with it.
    async fn send(
        &self,
        method: reqwest::Method,
        key: &str,
        query: &str,
        mut headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, Error> {
        let now = time::OffsetDateTime::now_utc();
        let amz_date = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        );
        let date = &amz_date[..8];
        let path = if self.path_style {
            format!("/{}/{}", uri_encode(&self.bucket, false), uri_encode(key, true))
        } else {
            format!("/{}", uri_encode(key, true))
        };
        let path = if key.is_empty() { path.trim_end_matches('/').to_string() } else { path };
        let path = if path.is_empty() { "/".to_string() } else { path };
        let url = reqwest::Url::parse(&format!(
            "{}{path}{}",
            self.endpoint,
            if query.is_empty() { String::new() } else { format!("?{query}") }
        ))
        .map_err(|e| Error::invalid(format!("S3 endpoint {}: {e}", self.endpoint)))?;
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let payload = sha256_hex(&body);
        headers.push(("host".into(), host));
        headers.push(("x-amz-content-sha256".into(), payload.clone()));
        headers.push(("x-amz-date".into(), amz_date.clone()));
        if let Some(t) = &self.token {
            headers.push(("x-amz-security-token".into(), t.clone()));
        }
        headers.sort();
        let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{}\n", v.trim())).collect();
        let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        let signed = signed.join(";");
        let canonical = format!("{}\n{path}\n{query}\n{canonical_headers}\n{signed}\n{payload}", method.as_str());
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", sha256_hex(canonical.as_bytes()));
        let mut k = hmac(format!("AWS4{}", self.secret).as_bytes(), date.as_bytes())?;
        for part in [self.region.as_str(), "s3", "aws4_request"] {
            k = hmac(&k, part.as_bytes())?;
        }
        let signature = hex(&hmac(&k, to_sign.as_bytes())?);
        let mut req = self.client.request(method, url).header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
                self.access_key
            ),
        );
        for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
            req = req.header(k.as_str(), v.as_str());
        }
        req.body(body)
            .send()
            .await
            .map_err(|e| Error::environment(format!("S3 bucket {}: no answer: {}", self.bucket, e.without_url())))
    }
}

/// What a publish did.
#[derive(Debug, Default)]
pub struct Published {
    pub written: Vec<String>,
    pub already: Vec<String>,
    pub retain_until: String,
}

fn shown_path(p: &Path) -> String {
    crate::util::one_line(&p.display().to_string()).into_owned()
}

/// An S3 prefix in a bucket with Object Lock, ready for objects written with retention.
pub(crate) struct Locked {
    s3: S3,
    bucket: String,
    prefix: String,
}

/// What a locked write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Put {
    Written,
    /// `create_only`, and the key was taken (S3's conditional create answered 412).
    Taken,
}

impl Locked {
    /// `s3://BUCKET/PREFIX`, its credentials from the environment, and the bucket's Object
    /// Lock configuration proven enabled: without it, retention headers are refused or
    /// ignored, and a copy that can be deleted is no better than the local one.
    pub(crate) async fn open(location: &str) -> Result<Locked, Error> {
        let shown = crate::util::one_line(location).into_owned();
        // Azure's immutability policies and legal holds are not written: Azurite, the only
        // Azure the tests can reach, answers them with 501 (not implemented), so nothing
        // could prove pgdrill sets them right. Said, rather than silently skipped.
        if location.starts_with("az://") || location.starts_with("azure://") {
            return Err(Error::invalid(format!(
                "{shown}: retention is written only as S3 Object Lock; Azure immutability policies are not supported (give s3://BUCKET/PREFIX, or drop the retention and rely on the container's own immutability policy)"
            )));
        }
        let rest = location
            .strip_prefix("s3://")
            .ok_or_else(|| Error::invalid(format!("{shown}: Object Lock is an S3 feature: give s3://BUCKET/PREFIX")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        if bucket.is_empty() || rest.contains('?') || prefix.split('/').any(|c| c == "." || c == "..") {
            return Err(Error::invalid(format!("{shown}: write s3://BUCKET/PREFIX (no options, no `.` or `..`)")));
        }
        let s3 = S3::from_env(bucket)?;
        let r = s3.send(reqwest::Method::GET, "", "object-lock=", Vec::new(), Vec::new()).await?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if !status.is_success() || !text.contains("<ObjectLockEnabled>Enabled</ObjectLockEnabled>") {
            let why = if text.contains("ObjectLockConfigurationNotFound") {
                "it has no Object Lock configuration".to_string()
            } else {
                format!("asking for its Object Lock configuration answered HTTP {}", status.as_u16())
            };
            return Err(Error::invalid(format!(
                "S3 bucket {bucket}: {why}; evidence is published only where it cannot be deleted: create a bucket with Object Lock enabled (aws s3api create-bucket --object-lock-enabled-for-bucket)"
            )));
        }
        Ok(Locked { s3, bucket: bucket.to_string(), prefix: prefix.to_string() })
    }

    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// The object `name` (relative to the prefix), if there is one.
    pub(crate) async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        let key = self.key(name);
        let r = self.s3.send(reqwest::Method::GET, &key, "", Vec::new(), Vec::new()).await?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !r.status().is_success() {
            return Err(Error::environment(format!(
                "reading s3://{}/{key}: HTTP {}",
                self.bucket,
                r.status().as_u16()
            )));
        }
        let bytes = r
            .bytes()
            .await
            .map_err(|e| Error::environment(format!("reading s3://{}/{key}: {}", self.bucket, e.without_url())))?;
        Ok(Some(bytes.to_vec()))
    }

    /// Write `name` with retention `mode` until `until` (RFC 3339). `create_only`: never
    /// over an existing object (S3's conditional create, `If-None-Match: *`), so two runs
    /// appending at once cannot both take one sequence number.
    pub(crate) async fn put(
        &self,
        name: &str,
        body: Vec<u8>,
        mode: Mode,
        until: &str,
        create_only: bool,
    ) -> Result<Put, Error> {
        let key = self.key(name);
        let md5 = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            hash(MessageDigest::md5(), &body).map_err(|e| Error::environment(format!("MD5: {e}")))?,
        );
        let mut headers = vec![
            ("content-md5".to_string(), md5),
            ("x-amz-object-lock-mode".to_string(), mode.header().to_string()),
            ("x-amz-object-lock-retain-until-date".to_string(), until.to_string()),
        ];
        if create_only {
            headers.push(("if-none-match".to_string(), "*".to_string()));
        }
        let r = self.s3.send(reqwest::Method::PUT, &key, "", headers, body).await?;
        if create_only && r.status() == reqwest::StatusCode::PRECONDITION_FAILED {
            return Ok(Put::Taken);
        }
        if !r.status().is_success() {
            let code = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            let reason = text.split("<Code>").nth(1).and_then(|t| t.split('<').next()).unwrap_or("");
            return Err(Error::environment(format!(
                "writing s3://{}/{key} with Object Lock: HTTP {code} {}",
                self.bucket,
                crate::util::one_line(reason)
            )));
        }
        Ok(Put::Written)
    }
}

/// `retain` from now, as the RFC 3339 date S3 takes (whole seconds).
pub(crate) fn retain_until(retain: Duration) -> String {
    let until = time::OffsetDateTime::now_utc() + retain;
    crate::util::rfc3339(until.replace_nanosecond(0).unwrap_or(until))
}

/// Copy the log in `dir` to `s3://BUCKET/PREFIX` (`location`) with Object Lock retention
/// `mode` for `retain` from now. Records and timestamps already there are left as they are
/// (they cannot change); one that differs from the local copy is an error naming it. The
/// checkpoint is written again (a new version; the old ones stay locked).
pub async fn publish(dir: &Path, location: &str, mode: Mode, retain: Duration) -> Result<Published, Error> {
    let shown = crate::util::one_line(location).into_owned();
    let rest = location
        .strip_prefix("s3://")
        .ok_or_else(|| Error::invalid(format!("{shown}: Object Lock is an S3 feature: give s3://BUCKET/PREFIX")))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/');
    if bucket.is_empty() || rest.contains('?') || prefix.split('/').any(|c| c == "." || c == "..") {
        return Err(Error::invalid(format!("{shown}: write s3://BUCKET/PREFIX (no options, no `.` or `..`)")));
    }
    // What is published is one verified state of the log, read under its lock: a log with
    // a problem is not made undeletable as if it were whole, and a run appending meanwhile
    // cannot leave the store a checkpoint that counts a record it never got (which would
    // read there as a removed record, kept for the whole retention).
    let snapshot = {
        let key_path = dir.join(PUBLIC_KEY);
        let key = super::keys::PublicKey::from_file(&key_path)?;
        let _lock = super::log::lock(dir)?;
        let v = super::verify::verify(dir, &key)?;
        if !v.ok() {
            return Err(Error::new(
                crate::error::Class::Failed,
                format!(
                    "{}the evidence log has problems: not published (check it with `pgdrill evidence verify`)",
                    v.text(&dir.display().to_string())
                ),
            ));
        }
        let mut files: Vec<(String, Vec<u8>, bool)> = Vec::new();
        let public =
            std::fs::read(&key_path).map_err(|e| Error::io(format!("reading {}", shown_path(&key_path)), e))?;
        files.push((PUBLIC_KEY.into(), public, false));
        for g in &v.good {
            files.push((format!("{RECORDS}/{}", record_name(g.sequence)), g.bytes.clone(), false));
            let tsr = super::timestamp::tsr_name(g.sequence);
            if let Ok(b) = std::fs::read(dir.join(RECORDS).join(&tsr)) {
                files.push((format!("{RECORDS}/{tsr}"), b, false));
            }
        }
        if let Some(c) = v.checkpoint {
            files.push((CHECKPOINT.into(), c, true));
        }
        files
    };
    let locked = Locked::open(location).await?;
    let until = retain_until(retain);
    let mut out = Published { retain_until: until.clone(), ..Default::default() };
    for (name, body, again) in snapshot {
        if !again {
            if let Some(there) = locked.get(&name).await? {
                if there != body {
                    return Err(Error::new(crate::error::Class::Failed, format!(
                        "s3://{bucket}/{} differs from the local {name}: one of the two copies was changed; check both with `pgdrill evidence verify`",
                        locked.key(&name)
                    )));
                }
                out.already.push(name);
                continue;
            }
        }
        locked.put(&name, body, mode, &until, false).await?;
        out.written.push(name);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signing key derivation and signature of AWS's own SigV4 example (IAM
    /// ListUsers, us-east-1, 20150830T123600Z).
    #[test]
    fn signature_v4_matches_aws_s_documented_example() {
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let mut k = hmac(format!("AWS4{secret}").as_bytes(), b"20150830").expect("hmac");
        for part in ["us-east-1", "iam", "aws4_request"] {
            k = hmac(&k, part.as_bytes()).expect("hmac");
        }
        assert_eq!(hex(&k), "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
        let to_sign = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\nf536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59";
        assert_eq!(
            hex(&hmac(&k, to_sign.as_bytes()).expect("hmac")),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
        assert_eq!(uri_encode("records/00000001.dsse.json", true), "records/00000001.dsse.json");
        assert_eq!(uri_encode("a b+c", false), "a%20b%2Bc");
    }

    /// Azure immutability is not written (Azurite does not implement it, so nothing could
    /// prove it): retention asked of an Azure location is refused, saying so, before any
    /// request, never silently dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn retention_on_an_azure_location_is_refused_saying_azure_immutability_is_unsupported() {
        for loc in ["az://evidence/prod", "azure://evidence/prod"] {
            let e = Locked::open(loc).await.err().expect("an Azure location was taken");
            assert_eq!(e.class(), crate::error::Class::Invalid, "{e}");
            assert!(e.to_string().contains("Azure immutability policies are not supported"), "{e}");
        }
    }

    /// `evidence publish` uploaded whatever the directory held, unchecked: a log with a
    /// removed record was made undeletable as if it were whole. It is now verified first
    /// (before any store is asked) and refused, naming the problem.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_log_with_a_problem_is_not_published() {
        use crate::evidence::{keys::SigningKey, log, statement::Statement, statement::Subject};
        let dir = tempfile::tempdir().expect("tmp");
        let key = SigningKey::generate().expect("key");
        for outcome in ["failed", "passed"] {
            let s = Statement::run(
                vec![Subject::sha256("x", "00")],
                serde_json::json!({"runbook": {"name": "dr"}, "kind": "drill", "outcome": outcome, "finished_at": "2026-12-01T00:00:00Z"}),
            );
            log::append(dir.path(), &key, s).expect("append");
        }
        std::fs::remove_file(dir.path().join(RECORDS).join(record_name(1))).expect("rm");
        let e = publish(dir.path(), "s3://bucket/evidence", Mode::Governance, Duration::from_secs(60))
            .await
            .expect_err("a log with a removed record was published");
        let e = e.to_string();
        assert!(e.contains("record 1: missing: the failed drill") && e.contains("not published"), "{e}");
    }
}
