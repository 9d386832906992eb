//! S3 Object Lock: objects kept from deletion and overwriting until a date (governance or
//! compliance mode), for what must outlive anyone's wish to remove it: evidence records
//! (`evidence publish`, `--evidence-retain`) and, when a runbook asks, backups and their
//! manifests (`backup.create`'s `retain`). A bucket without an Object Lock configuration is
//! refused before anything is written: a copy that can be deleted is no better than none,
//! and a retention silently dropped would be a promise the store never made.
//!
//! The object_store crate behind `remote.rs` cannot send retention headers nor set an
//! object's retention, so this is a small S3 client of its own (AWS Signature Version 4
//! through OpenSSL's HMAC), for these requests only: the bucket's lock configuration, HEAD,
//! GET and PUT of one object, and PutObjectRetention of one version. What it sends them with
//! is what the location's store is built with (`remote::s3_access`, the one configuration of
//! an S3 client): credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, AWS_PROFILE), region, endpoint, addressing and plain HTTP from the
//! location's options or the environment, and the store's request and connect timeouts.

use std::collections::BTreeMap;
use std::time::Duration;

use openssl::hash::{hash, MessageDigest};
use openssl::pkey::PKey;
use openssl::sign::Signer;

use crate::archive::hex;
use crate::Error;

fn sha256_hex(bytes: &[u8]) -> String {
    hash(MessageDigest::sha256(), bytes).map(|d| hex(&d)).unwrap_or_default()
}

/// Object Lock retention mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Users with a special permission may still shorten or remove it.
    Governance,
    /// No one can, the root account included, until the date.
    Compliance,
}

impl Mode {
    /// `governance` or `compliance`, as a runbook or the command line writes it.
    pub fn parse(text: &str) -> Result<Mode, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "governance" => Ok(Mode::Governance),
            "compliance" => Ok(Mode::Compliance),
            other => Err(format!(
                "`{}` is no Object Lock mode: write governance (users with s3:BypassGovernanceRetention may still remove it) or compliance (no one can until the date)",
                crate::util::visible(other)
            )),
        }
    }

    /// As S3 spells it (`x-amz-object-lock-mode`, a retention's `Mode`).
    pub fn header(self) -> &'static str {
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

/// A path segment or query value as SigV4 encodes it: unreserved characters as they are
/// (and `/` in a path), everything else percent-encoded, as the one encoder does.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    crate::util::percent_encode_keep(s, if keep_slash { "/" } else { "" })
}

impl S3 {
    /// The client of an S3 location, made from what its store is made with
    /// (`remote::s3_access`: the environment, AWS_PROFILE, the location's options, the
    /// store's timeouts), so that both send their requests with the same credentials, to the
    /// same endpoint and region, within the same bounds.
    fn new(access: super::remote::S3Access) -> Result<S3, Error> {
        let super::remote::S3Access {
            bucket, endpoint, path_style, region, allow_http, access_key, secret, token, ..
        } = access;
        let (Some(access_key), Some(secret)) = (access_key, secret) else {
            return Err(Error::invalid(
                "S3 Object Lock needs S3 credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones) or AWS_PROFILE; an instance role is not read for it",
            ));
        };
        if endpoint.starts_with("http://") && !allow_http {
            return Err(Error::invalid(format!(
                "{endpoint} is plain HTTP: set AWS_ALLOW_HTTP=true to allow it (a local S3-compatible server)"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(access.timeout)
            .connect_timeout(access.connect_timeout)
            .build()
            .map_err(|e| Error::environment(format!("an HTTP client: {e}")))?;
        Ok(S3 { client, endpoint, path_style, bucket, region, access_key, secret, token })
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
        let amz_date = crate::util::compact_utc(now, false);
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

/// The S3 client of `s3://BUCKET/PREFIX` (`location`), its bucket and its prefix.
fn located(location: &str) -> Result<(S3, String, String), Error> {
    let shown = crate::util::one_line(location).into_owned();
    if !location.trim_start().starts_with("s3://") {
        return Err(Error::invalid(format!(
            "{shown}: retention is kept only by S3 Object Lock: give s3://BUCKET/PREFIX"
        )));
    }
    // Read as the store reads it (`remote::s3_access` checks it as `remote::open` does:
    // no credentials in it, no unknown option, no `.` or `..`).
    let access =
        super::remote::s3_access(location).map_err(|e| Error::invalid(crate::util::one_line(&e).into_owned()))?;
    let (bucket, prefix) = (access.bucket.clone(), access.prefix.clone());
    Ok((S3::new(access)?, bucket, prefix))
}

/// An object under a prefix whose current version is a delete marker (a DELETE without a
/// version id in a versioned bucket): hidden from a listing, yet still kept by its versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hidden {
    /// Its name under the prefix.
    pub name: String,
    /// The newest version that still holds it.
    pub version: String,
}

/// The objects under `s3://BUCKET/PREFIX` (`location`) hidden by a delete marker, read with
/// ListObjectVersions (every page); `None` when the bucket has never kept versions.
pub(crate) async fn hidden_by_delete_markers(location: &str) -> Result<Option<Vec<Hidden>>, Error> {
    let (s3, bucket, prefix) = located(location)?;
    let answer = |what: &str, status: reqwest::StatusCode| {
        Error::environment(format!("S3 bucket {bucket}: {what} answered HTTP {}", status.as_u16()))
    };
    let r = s3.send(reqwest::Method::GET, "", "versioning=", Vec::new(), Vec::new()).await?;
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(answer("asking whether it keeps versions", status));
    }
    if !text.contains("<Status>Enabled</Status>") && !text.contains("<Status>Suspended</Status>") {
        return Ok(None);
    }
    let under = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
    // Per key: whether its current version is a delete marker, and its newest real version
    // (S3 lists a key's versions newest first, across pages too).
    let mut keys: BTreeMap<String, (bool, Option<String>)> = BTreeMap::new();
    let mut markers: Option<(String, String)> = None;
    loop {
        let mut query = Vec::new();
        if let Some((k, v)) = &markers {
            query.push(format!("key-marker={}", uri_encode(k, false)));
            query.push(format!("prefix={}", uri_encode(&under, false)));
            query.push(format!("version-id-marker={}", uri_encode(v, false)));
        } else {
            query.push(format!("prefix={}", uri_encode(&under, false)));
        }
        query.push("versions=".into());
        let r = s3.send(reqwest::Method::GET, "", &query.join("&"), Vec::new(), Vec::new()).await?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(answer("listing its object versions", status));
        }
        let page = versions_page(&text)
            .map_err(|e| Error::environment(format!("S3 bucket {bucket}: its list of object versions: {e}")))?;
        for v in page.entries {
            let Some(name) = v.key.strip_prefix(&under) else { continue };
            let e = keys.entry(name.to_string()).or_insert((false, None));
            if v.latest && v.marker {
                e.0 = true;
            }
            if !v.marker && e.1.is_none() {
                e.1 = Some(v.version);
            }
        }
        match page.next {
            Some(next) => markers = Some(next),
            None => break,
        }
    }
    let hidden = keys
        .into_iter()
        .filter_map(|(name, (marked, version))| Some(Hidden { name, version: version? }).filter(|_| marked))
        .collect();
    Ok(Some(hidden))
}

/// One entry of a ListObjectVersions answer.
struct VersionEntry {
    key: String,
    version: String,
    latest: bool,
    marker: bool,
}

/// One page of a ListObjectVersions answer: its entries, and the markers of the next page.
struct VersionsPage {
    entries: Vec<VersionEntry>,
    next: Option<(String, String)>,
}

fn versions_page(xml: &str) -> Result<VersionsPage, String> {
    // The answer's shape is fixed and flat (ListVersionsResult): read by its tags, so the
    // library needs no XML parser for it.
    fn field<'a>(block: &'a str, tag: &str) -> Option<&'a str> {
        let start = block.find(&format!("<{tag}>"))? + tag.len() + 2;
        let end = block[start..].find(&format!("</{tag}>"))? + start;
        Some(&block[start..end])
    }
    fn text(s: &str) -> String {
        s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
    }
    let mut page = VersionsPage { entries: Vec::new(), next: None };
    let mut rest = xml;
    loop {
        let v = rest.find("<Version>").map(|i| (i, "Version"));
        let d = rest.find("<DeleteMarker>").map(|i| (i, "DeleteMarker"));
        let Some((at, tag)) = [v, d].into_iter().flatten().min() else { break };
        let close = format!("</{tag}>");
        let body = &rest[at + tag.len() + 2..];
        let end = body.find(&close).ok_or_else(|| format!("an unclosed <{tag}>"))?;
        let block = &body[..end];
        page.entries.push(VersionEntry {
            key: text(field(block, "Key").ok_or("an entry without a key")?),
            version: text(field(block, "VersionId").unwrap_or("null")),
            latest: field(block, "IsLatest") == Some("true"),
            marker: tag == "DeleteMarker",
        });
        rest = &body[end + close.len()..];
    }
    if field(xml, "IsTruncated") == Some("true") {
        let next = field(xml, "NextKeyMarker").zip(field(xml, "NextVersionIdMarker"));
        let (k, v) = next.ok_or("truncated, without the markers of its next page")?;
        page.next = Some((text(k), text(v)));
    }
    Ok(page)
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
        let (s3, bucket, prefix) = located(location)?;
        let (bucket, prefix) = (bucket.as_str(), prefix.as_str());
        let r = s3.send(reqwest::Method::GET, "", "object-lock=", Vec::new(), Vec::new()).await?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if !status.is_success() || !text.contains("<ObjectLockEnabled>Enabled</ObjectLockEnabled>") {
            let ask = "retention is kept only where the store enforces it: use a bucket created with Object Lock enabled (aws s3api create-bucket --object-lock-enabled-for-bucket), or drop the retention";
            if text.contains("ObjectLockConfigurationNotFound") || status.is_success() {
                return Err(Error::invalid(format!("S3 bucket {bucket}: it has no Object Lock configuration; {ask}")));
            }
            // The store's failure (credentials, a missing bucket, an outage), not the
            // configuration's: said as the environment's.
            return Err(Error::environment(format!(
                "S3 bucket {bucket}: asking for its Object Lock configuration answered HTTP {}",
                status.as_u16()
            )));
        }
        Ok(Locked { s3, bucket: bucket.to_string(), prefix: prefix.to_string() })
    }

    pub(crate) fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// The answer to `method` on `name`: `None` when there is no such object, an error
    /// naming the object for any other failure.
    async fn found(
        &self,
        method: reqwest::Method,
        name: &str,
        query: &str,
    ) -> Result<Option<reqwest::Response>, Error> {
        let key = self.key(name);
        let r = self.s3.send(method, &key, query, Vec::new(), Vec::new()).await?;
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
        Ok(Some(r))
    }

    /// The object `name` (relative to the prefix), if there is one.
    pub(crate) async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        let Some(r) = self.found(reqwest::Method::GET, name, "").await? else { return Ok(None) };
        let key = self.key(name);
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
            return Err(Error::environment(format!(
                "writing s3://{}/{key} with Object Lock: {}",
                self.bucket,
                refusal(r).await
            )));
        }
        Ok(Put::Written)
    }

    /// The version id, ETag and retention (mode, retain-until) HEAD finds for `name`, of the
    /// version `version` when given (else the newest); `None` when there is no such object.
    async fn head(&self, name: &str, version: Option<&str>) -> Result<Option<Head>, Error> {
        let query = version.map(|v| format!("versionId={}", uri_encode(v, false))).unwrap_or_default();
        let Some(r) = self.found(reqwest::Method::HEAD, name, &query).await? else { return Ok(None) };
        let h = |n: &str| r.headers().get(n).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_string());
        Ok(Some(Head {
            version: h("x-amz-version-id").filter(|v| !v.is_empty() && v != "null"),
            etag: h("etag").map(|e| e.trim_matches('"').to_string()),
            mode: h("x-amz-object-lock-mode"),
            until: h("x-amz-object-lock-retain-until-date"),
            kms: h("x-amz-server-side-encryption").is_some_and(|v| v.starts_with("aws:kms")),
        }))
    }

    /// Keep `name` (relative to the prefix), just published by another client, from
    /// deletion until `until` (RFC 3339) in `mode`: the version HEAD finds now, proven to be
    /// the one published where its ETag is known (`etag`: another version put there meanwhile
    /// is not locked in its place), its retention set on that version (PutObjectRetention)
    /// and read back. Returns the version id and retain-until date the store holds.
    pub(crate) async fn retain(
        &self,
        name: &str,
        etag: Option<&str>,
        mode: Mode,
        until: &str,
    ) -> Result<(String, String), Error> {
        let key = self.key(name);
        let shown = format!("s3://{}/{key}", self.bucket);
        let Some(head) = self.head(name, None).await? else {
            return Err(Error::environment(format!("{shown}: gone before its retention was set")));
        };
        if let (Some(want), Some(got), false) = (etag.map(|e| e.trim_matches('"')), head.etag.as_deref(), head.kms) {
            if want != got {
                return Err(Error::environment(format!(
                    "{shown}: its newest version (ETag {got}) is not the one published (ETag {want}): another client wrote it meanwhile; nothing was locked"
                )));
            }
        }
        // A bucket with Object Lock keeps versions: without one, the lock would name whatever
        // is newest when the store gets to it.
        let Some(version) = head.version else {
            return Err(Error::environment(format!(
                "{shown}: the store gave no version id, so no retention can be pinned to this version (Object Lock buckets are versioned)"
            )));
        };
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode><RetainUntilDate>{until}</RetainUntilDate></Retention>",
            mode.header()
        )
        .into_bytes();
        // S3 takes a retention only with the body's MD5.
        let md5 = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            hash(MessageDigest::md5(), &body).map_err(|e| Error::environment(format!("MD5: {e}")))?,
        );
        let query = format!("retention=&versionId={}", uri_encode(&version, false));
        let r = self.s3.send(reqwest::Method::PUT, &key, &query, vec![("content-md5".to_string(), md5)], body).await?;
        if !r.status().is_success() {
            return Err(Error::environment(format!(
                "setting the retention of {shown} (version {}): {}",
                crate::util::one_line(&version),
                refusal(r).await
            )));
        }
        // Read back: a store that answered 200 and kept nothing (or another date) is caught
        // here, not by the first delete that succeeds.
        let back = self.head(name, Some(&version)).await?.unwrap_or_default();
        let held = back.until.as_deref().and_then(parse_time);
        let wanted = parse_time(until);
        if back.mode.as_deref() != Some(mode.header()) || held.is_none() || held < wanted {
            return Err(Error::environment(format!(
                "{shown} (version {}): the store holds retention {} until {} after it was set to {} until {until}",
                crate::util::one_line(&version),
                back.mode.as_deref().map(crate::util::one_line).unwrap_or("(none)".into()),
                back.until.as_deref().map(crate::util::one_line).unwrap_or("(none)".into()),
                mode.header(),
            )));
        }
        Ok((version, back.until.unwrap_or_default()))
    }
}

/// What HEAD says of one object version.
#[derive(Debug, Default)]
struct Head {
    version: Option<String>,
    etag: Option<String>,
    mode: Option<String>,
    until: Option<String>,
    /// Encrypted with KMS keys, whose ETags are no MD5 of the bytes sent.
    kms: bool,
}

/// What S3 said of a request it refused: `HTTP <status> <its error code>`, on one line.
async fn refusal(r: reqwest::Response) -> String {
    let code = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let reason = text.split("<Code>").nth(1).and_then(|t| t.split('<').next()).unwrap_or("");
    format!("HTTP {code} {}", crate::util::one_line(reason))
}

fn parse_time(t: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(t.trim(), &time::format_description::well_known::Rfc3339).ok()
}

/// `retain` from now, as the RFC 3339 date S3 takes (whole seconds).
pub(crate) fn retain_until(retain: Duration) -> String {
    let until = time::OffsetDateTime::now_utc() + retain;
    crate::util::rfc3339(until.replace_nanosecond(0).unwrap_or(until))
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
        assert_eq!(uri_encode("a/b é", false), "a%2Fb%20%C3%A9");
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

    /// A backup's location carries the options that say where its bucket is; they reach
    /// the lock client (an endpoint and plain HTTP allowed there), and a local directory
    /// asked for retention is refused saying why, before any request.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_location_s_endpoint_options_reach_the_lock_client_and_a_local_directory_is_refused() {
        let e = Locked::open("/srv/backups").await.err().expect("a local directory was taken");
        assert_eq!(e.class(), crate::error::Class::Invalid, "{e}");
        assert!(e.to_string().contains("retention is kept only by S3 Object Lock"), "{e}");
        // Read as the store reads it (`remote::s3_access`): the location's options over the
        // environment, path-style with an endpoint, the store's timeouts.
        let access = super::super::remote::s3_access(
            "s3://b/p?endpoint=http://127.0.0.1:9&allow_http=true&region=eu-west-3&timeout=7s",
        )
        .expect("an S3 location");
        assert_eq!(
            (access.endpoint.as_str(), access.path_style, access.region.as_str(), access.allow_http),
            ("http://127.0.0.1:9", true, "eu-west-3", true)
        );
        assert_eq!((access.bucket.as_str(), access.prefix.as_str()), ("b", "p"));
        assert_eq!(access.timeout, Duration::from_secs(7), "the store's request timeout");
        // Credentials are read from the environment: only where a test run has none set
        // does this say so rather than build the client.
        match S3::new(access) {
            Ok(s3) => assert_eq!((s3.endpoint.as_str(), s3.path_style), ("http://127.0.0.1:9", true)),
            Err(e) => assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}"),
        }
        if std::env::var("AWS_ALLOW_HTTP").is_err() {
            let plain =
                super::super::remote::s3_access("s3://b/p?endpoint=http://127.0.0.1:9").expect("an S3 location");
            assert!(!plain.allow_http);
            let e = S3::new(plain).err().expect("plain HTTP was taken without AWS_ALLOW_HTTP");
            assert!(e.to_string().contains("AWS_ALLOW_HTTP") || e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");
        }
        // A credential in the location is refused, as a store refuses it, and never shown.
        let e = Locked::open("s3://b/p?secret=hunter2hunter2").await.err().expect("a credential in a location");
        assert_eq!(e.class(), crate::error::Class::Invalid, "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(Mode::parse("Compliance"), Ok(Mode::Compliance));
        assert!(Mode::parse("forever").is_err());
    }

    /// A key's entries newest first, a delete marker current over a real version, and a
    /// truncated page's markers.
    #[test]
    fn a_page_of_object_versions_is_read_with_its_delete_markers() {
        let xml = "<ListVersionsResult><IsTruncated>true</IsTruncated><NextKeyMarker>p/b&amp;c</NextKeyMarker><NextVersionIdMarker>v9</NextVersionIdMarker>\
            <DeleteMarker><Key>p/a</Key><VersionId>m1</VersionId><IsLatest>true</IsLatest></DeleteMarker>\
            <Version><Key>p/a</Key><VersionId>v1</VersionId><IsLatest>false</IsLatest></Version>\
            <Version><Key>p/b&amp;c</Key><VersionId>v2</VersionId><IsLatest>true</IsLatest></Version></ListVersionsResult>";
        let page = versions_page(xml).expect("page");
        let got: Vec<(&str, &str, bool, bool)> =
            page.entries.iter().map(|e| (e.key.as_str(), e.version.as_str(), e.latest, e.marker)).collect();
        assert_eq!(got, [("p/a", "m1", true, true), ("p/a", "v1", false, false), ("p/b&c", "v2", true, false)]);
        assert_eq!(page.next, Some(("p/b&c".to_string(), "v9".to_string())));
        assert!(versions_page("<ListVersionsResult><IsTruncated>true</IsTruncated></ListVersionsResult>").is_err());
    }
}
