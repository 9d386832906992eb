//! gs:// over Google Cloud Storage's JSON API (`/storage/v1/b/BUCKET/o...`), the API Google's
//! own client libraries speak, as an `object_store::ObjectStore` that `remote::Remote` wraps
//! (its mirror, pinned reads, tracked uploads and timeouts are the same as for s3:// and
//! az://).
//!
//! Why not object_store's own GCS client: it speaks GCS's XML API (HEAD, `?list-type=2`, XML
//! multipart uploads), which the only GCS emulator we can run (PyPI `gcp-storage-emulator`)
//! answers 501, so no gs:// write could ever be tested. Every call here is one a real bucket
//! and that emulator both serve:
//! - list: `GET o?prefix=&pageToken=`, page after page;
//! - head: `GET o/NAME` (the object's resource: size, time, generation);
//! - read: `GET o/NAME?alt=media` with `Range`, pinned by `ifGenerationMatch` to the generation
//!   a listing or head saw (a replaced object is a 412, "changed", never mixed bytes);
//! - create: a resumable upload, in parts of 256 KiB multiples; nothing is visible under the
//!   name until its last request says the total; an abort leaves nothing (an upload whose last
//!   request landed is deleted by its generation);
//! - put_new: `uploadType=media&ifGenerationMatch=0`, which a real bucket refuses with 412 when
//!   the name is taken (the emulator ignores the precondition: see README);
//! - delete, copy (`rewriteTo`, looped until done).
//!
//! Credentials, for a real bucket, from the environment (or a WAL config's settings), first
//! found: `GOOGLE_OAUTH_ACCESS_TOKEN` (a bearer token, e.g. `gcloud auth print-access-token`),
//! a service-account key file (`GOOGLE_APPLICATION_CREDENTIALS`, or object_store's names
//! `GOOGLE_SERVICE_ACCOUNT_PATH`/`GOOGLE_SERVICE_ACCOUNT`, or the key itself in
//! `GOOGLE_SERVICE_ACCOUNT_KEY`: a JWT signed RS256 with openssl is exchanged for a token),
//! else the metadata server of the machine (GCE, GKE, Cloud Run). An emulator gets none: only
//! with `use_emulator=true` or STORAGE_EMULATOR_HOST (see `remote::gcs_emulator`). A token lives in memory only and is
//! sent in a header; errors never carry a URL (a resumable session's URL is itself a
//! credential) nor a token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, GetResult, ListResult, ObjectMeta, PutOptions, PutPayload, PutResult};

use crate::util::percent_encode;

/// Google's endpoint, when no emulator is named.
const GOOGLE: &str = "https://storage.googleapis.com";
/// A resumable upload's requests other than the last carry a multiple of this (GCS's rule).
const CHUNK: u64 = 256 << 10;
/// The scope a service account's token is asked for: objects read and written.
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
/// How the metadata server is reached when GCE_METADATA_HOST does not say.
const METADATA: &str = "169.254.169.254";

/// A bucket reached through the JSON API. Cheap to clone (its state is shared).
#[derive(Clone)]
pub struct Gcs(Arc<Inner>);

struct Inner {
    http: reqwest::Client,
    /// `https://storage.googleapis.com` or the emulator's base URL, without a trailing `/`.
    base: String,
    bucket: String,
    auth: Auth,
    /// Resumable uploads in flight, by the id pgdrill gave them: their session URL never
    /// leaves this process (it lets anyone holding it write the object), so an upload
    /// recorded for a later abort names this id only.
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

enum Auth {
    /// An emulator: no credentials at all.
    None,
    /// `GOOGLE_OAUTH_ACCESS_TOKEN`, sent as it is.
    Token(String),
    /// A service account's key: tokens made from signed JWTs, kept until shortly before they
    /// expire.
    Key { email: String, key: openssl::pkey::PKey<openssl::pkey::Private>, token_uri: String, cached: Cached },
    /// The machine's metadata server.
    Metadata { host: String, cached: Cached },
}

type Cached = tokio::sync::Mutex<Option<(String, std::time::Instant)>>;

/// One resumable upload: its session, and whose turn it is (parts go up one after the other,
/// each at the offset the ones before it ended at).
struct Session {
    url: String,
    turn: tokio::sync::watch::Sender<Turn>,
    /// The generation of the object once the upload's last request made it.
    made: Mutex<Option<String>>,
}

#[derive(Debug, Clone, Copy)]
struct Turn {
    next: usize,
    offset: u64,
    failed: bool,
}

impl std::fmt::Debug for Gcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gs://{}", self.0.bucket)
    }
}

impl std::fmt::Display for Gcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gs://{}", self.0.bucket)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An error of this store, one line, for `remote::describe`.
fn generic(what: String) -> object_store::Error {
    object_store::Error::Generic { store: "GCS", source: what.into() }
}

/// A request that got no answer: the client's words without the URL it was sent to.
fn unsent(what: &str, path: &str, e: reqwest::Error) -> object_store::Error {
    let e = e.without_url();
    let kind = if e.is_timeout() { " (timed out)" } else { "" };
    generic(format!("{what} {path}: error sending request{kind}: {e}"))
}

/// A refusal, by status: the classes `remote::describe` and the callers act on.
async fn refused(what: &str, path: &str, r: reqwest::Response) -> object_store::Error {
    let status = r.status();
    // GCS says why in `error.message`; the emulator often says nothing.
    let body = r.text().await.unwrap_or_default();
    let said = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_default();
    let said: String = crate::util::one_line(&said).chars().take(200).collect();
    let line = format!("{what} {path}: {status}{}{said}", if said.is_empty() { "" } else { ": " });
    let (path, source) = (path.to_string(), line.clone().into());
    match status.as_u16() {
        404 => object_store::Error::NotFound { path, source },
        412 => object_store::Error::Precondition { path, source },
        401 => object_store::Error::Unauthenticated { path, source },
        403 => object_store::Error::PermissionDenied { path, source },
        _ => generic(line),
    }
}

/// The settings named: given ones first, else the environment.
fn setting(settings: &[(String, String)], name: &str) -> Option<String> {
    settings
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var(name).ok())
        .filter(|v| !v.is_empty())
}

impl Gcs {
    /// A client of `bucket`: at `emulator` (its base URL) without credentials, else at Google
    /// with the environment's (see the module docs). Every request ends within `timeout`.
    pub fn open(
        bucket: &str,
        emulator: Option<String>,
        settings: &[(String, String)],
        timeout: std::time::Duration,
        connect: std::time::Duration,
    ) -> Result<Gcs, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(connect)
            .build()
            .map_err(|e| format!("cannot make an HTTP client for gs://{bucket}: {e}"))?;
        let (base, auth) = match emulator {
            Some(base) => (base, Auth::None),
            None => {
                let (auth, base) = credentials(settings)?;
                (base.unwrap_or_else(|| GOOGLE.to_string()), auth)
            }
        };
        Ok(Gcs(Arc::new(Inner { http, base, bucket: bucket.to_string(), auth, sessions: Mutex::default() })))
    }

    fn objects(&self) -> String {
        format!("{}/storage/v1/b/{}/o", self.0.base, percent_encode(&self.0.bucket))
    }

    fn object(&self, key: &Key) -> String {
        format!("{}/{}", self.objects(), percent_encode(key.as_ref()))
    }

    fn uploads(&self) -> String {
        format!("{}/upload/storage/v1/b/{}/o", self.0.base, percent_encode(&self.0.bucket))
    }

    /// `req` with the bearer token, when the store has credentials.
    async fn authed(&self, req: reqwest::RequestBuilder) -> object_store::Result<reqwest::RequestBuilder> {
        match self.token().await? {
            Some(t) => Ok(req.bearer_auth(t)),
            None => Ok(req),
        }
    }

    /// Send `req` (about `path`, for the error), its answer when it is a success.
    async fn send(
        &self,
        what: &str,
        path: &str,
        req: reqwest::RequestBuilder,
    ) -> object_store::Result<reqwest::Response> {
        let r = self.authed(req).await?.send().await.map_err(|e| unsent(what, path, e))?;
        match r.status().is_success() {
            true => Ok(r),
            false => Err(refused(what, path, r).await),
        }
    }

    async fn token(&self) -> object_store::Result<Option<String>> {
        let cached = match &self.0.auth {
            Auth::None => return Ok(None),
            Auth::Token(t) => return Ok(Some(t.clone())),
            Auth::Key { cached, .. } | Auth::Metadata { cached, .. } => cached,
        };
        let mut c = cached.lock().await;
        if let Some((t, until)) = c.as_ref() {
            if std::time::Instant::now() < *until {
                return Ok(Some(t.clone()));
            }
        }
        let (token, lasts) = match &self.0.auth {
            Auth::Key { email, key, token_uri, .. } => {
                let jwt = assertion(email, key, token_uri, time::OffsetDateTime::now_utc().unix_timestamp())
                    .map_err(|e| generic(format!("signing the service account's token request: {e}")))?;
                let form = [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", jwt.as_str())];
                let body = serde_urlencode(&form);
                let req =
                    self.0.http.post(token_uri).header("Content-Type", "application/x-www-form-urlencoded").body(body);
                self.token_from("asking for a token for the service account", req).await?
            }
            Auth::Metadata { host, .. } => {
                let req = self
                    .0
                    .http
                    .get(format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/token"))
                    .header("Metadata-Flavor", "Google");
                self.token_from("asking the metadata server for a token (no GOOGLE_APPLICATION_CREDENTIALS nor GOOGLE_OAUTH_ACCESS_TOKEN is set)", req).await?
            }
            Auth::None | Auth::Token(_) => return Ok(None),
        };
        // Renewed a minute early: a request signed just before expiry may arrive after it.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(lasts.saturating_sub(60));
        *c = Some((token.clone(), until));
        Ok(Some(token))
    }

    /// The `access_token` and `expires_in` of a token endpoint's answer.
    async fn token_from(&self, what: &str, req: reqwest::RequestBuilder) -> object_store::Result<(String, u64)> {
        let r = req.send().await.map_err(|e| unsent(what, "", e))?;
        if !r.status().is_success() {
            let status = r.status();
            return Err(object_store::Error::Unauthenticated {
                path: String::new(),
                source: format!("{what}: {status}").into(),
            });
        }
        let v: serde_json::Value = json_of(r, what.to_string()).await?;
        match (v["access_token"].as_str(), v["expires_in"].as_u64()) {
            (Some(t), lasts) => Ok((t.to_string(), lasts.unwrap_or(300))),
            _ => Err(generic(format!("{what}: the answer holds no access_token"))),
        }
    }

    /// An object's resource (its JSON) as `ObjectMeta`.
    fn meta(&self, v: &serde_json::Value) -> object_store::Result<ObjectMeta> {
        let name = v["name"].as_str().ok_or_else(|| generic("an object without a name in the answer".into()))?;
        let size = v["size"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .or_else(|| v["size"].as_u64())
            .ok_or_else(|| generic(format!("{name}: the answer gives no size")))?;
        let generation = v["generation"].as_str().map(str::to_string);
        Ok(ObjectMeta {
            location: Key::from(name),
            last_modified: v["updated"].as_str().and_then(|t| t.parse().ok()).unwrap_or_default(),
            size,
            e_tag: generation.clone(),
            version: generation,
        })
    }

    /// One page of a listing.
    async fn page(
        &self,
        prefix: Option<&str>,
        delimiter: bool,
        token: Option<&str>,
    ) -> object_store::Result<serde_json::Value> {
        let mut q: Vec<(&str, &str)> = vec![];
        if let Some(p) = prefix {
            q.push(("prefix", p));
        }
        if delimiter {
            q.push(("delimiter", "/"));
        }
        if let Some(t) = token {
            q.push(("pageToken", t));
        }
        let shown = format!("gs://{}/{}", self.0.bucket, prefix.unwrap_or(""));
        let r = self.send("listing", &shown, self.0.http.get(self.objects()).query(&q)).await?;
        json_of(r, format!("listing {shown}")).await
    }

    fn session(&self, id: &str, path: &Key) -> object_store::Result<Arc<Session>> {
        lock(&self.0.sessions).get(id).cloned().ok_or_else(|| object_store::Error::NotFound {
            path: path.to_string(),
            source: "no upload of this process by that id (a resumable upload shows nothing until it ends, and GCS drops it after a week)".into(),
        })
    }

    /// Start a resumable upload of `path` (in `class`, when given).
    async fn start(&self, path: &Key, class: Option<String>) -> object_store::Result<String> {
        let mut body = serde_json::json!({ "name": path.as_ref() });
        if let Some(c) = class {
            body["storageClass"] = c.into();
        }
        let req = self
            .0
            .http
            .post(self.uploads())
            .query(&[("uploadType", "resumable"), ("name", path.as_ref())])
            .header("Content-Type", "application/json")
            .body(body.to_string());
        let r = self.send("starting the upload of", path.as_ref(), req).await?;
        let url = r
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| generic(format!("starting the upload of {path}: the answer names no session")))?
            .to_string();
        let id = crate::archive::hex(&crate::archive::crypto::random::<12>());
        let (turn, _) = tokio::sync::watch::channel(Turn { next: 0, offset: 0, failed: false });
        lock(&self.0.sessions).insert(id.clone(), Arc::new(Session { url, turn, made: Mutex::new(None) }));
        Ok(id)
    }

    /// Send one part at its turn: a non-final request when its size is a multiple of
    /// `CHUNK`, else the last one (only the upload's last part may be shorter).
    async fn part(&self, path: &Key, id: &str, idx: usize, data: PutPayload) -> object_store::Result<()> {
        let s = self.session(id, path)?;
        let mut rx = s.turn.subscribe();
        let turn = *rx
            .wait_for(|t| t.next == idx || t.failed)
            .await
            .map_err(|_| generic(format!("uploading {path}: the upload ended")))?;
        if turn.failed {
            return Err(generic(format!("uploading {path}: an earlier part failed")));
        }
        let len = data.content_length() as u64;
        let sent = async {
            if len == 0 {
                return Ok(());
            }
            let last = !len.is_multiple_of(CHUNK);
            let end = turn.offset + len - 1;
            let range = match last {
                true => format!("bytes {}-{end}/{}", turn.offset, turn.offset + len),
                false => format!("bytes {}-{end}/*", turn.offset),
            };
            let bytes: bytes_of::Bytes = data.into();
            let req = self.0.http.put(&s.url).header("Content-Range", range).body(bytes);
            let r = self.authed(req).await?.send().await.map_err(|e| unsent("uploading", path.as_ref(), e))?;
            match r.status().as_u16() {
                // More is expected: the store says up to where it holds the bytes.
                308 if !last => {
                    let held = r
                        .headers()
                        .get("range")
                        .and_then(|h| h.to_str().ok())
                        .and_then(|h| h.rsplit_once('-'))
                        .and_then(|(_, e)| e.parse::<u64>().ok());
                    match held {
                        Some(h) if h != end => {
                            Err(generic(format!("uploading {path}: the store holds bytes up to {h}, {end} were sent")))
                        }
                        _ => Ok(()),
                    }
                }
                200 | 201 if last => {
                    let v: serde_json::Value = json_of(r, format!("uploading {path}")).await?;
                    *lock(&s.made) = v["generation"].as_str().map(str::to_string);
                    Ok(())
                }
                _ if r.status().is_success() || r.status().as_u16() == 308 => Err(generic(format!(
                    "uploading {path}: the store answered {} to a {} part",
                    r.status(),
                    if last { "last" } else { "middle" }
                ))),
                _ => Err(refused("uploading", path.as_ref(), r).await),
            }
        }
        .await;
        s.turn.send_modify(|t| match &sent {
            Ok(()) => {
                t.next = idx + 1;
                t.offset += len;
            }
            Err(_) => t.failed = true,
        });
        sent
    }

    /// End the upload: its last request, unless a short part was already it.
    async fn finish(&self, path: &Key, id: &str) -> object_store::Result<PutResult> {
        let s = self.session(id, path)?;
        let made = lock(&s.made).clone();
        let generation = match made {
            Some(g) => Some(g),
            None => {
                let t = *s.turn.borrow();
                if t.failed {
                    return Err(generic(format!("uploading {path}: a part failed")));
                }
                let req = self.0.http.put(&s.url).header("Content-Range", format!("bytes */{}", t.offset)).body("");
                let r = self.send("completing the upload of", path.as_ref(), req).await?;
                let v: serde_json::Value = json_of(r, format!("completing the upload of {path}")).await?;
                v["generation"].as_str().map(str::to_string)
            }
        };
        lock(&self.0.sessions).remove(id);
        Ok(PutResult { e_tag: generation.clone(), version: generation })
    }

    /// Drop the upload: a session never ended shows nothing (it is cancelled, and GCS drops
    /// it anyway); one whose last part made the object has that generation deleted.
    async fn drop_upload(&self, path: &Key, id: &str) -> object_store::Result<()> {
        let s = self.session(id, path)?;
        lock(&self.0.sessions).remove(id);
        s.turn.send_modify(|t| t.failed = true);
        let made = lock(&s.made).clone();
        match made {
            Some(g) => {
                let req = self.0.http.delete(self.object(path)).query(&[("ifGenerationMatch", g.as_str())]);
                match self.send("deleting the aborted upload", path.as_ref(), req).await {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            None => {
                // GCS answers a cancelled session 499; what it answers does not matter, the
                // session holds nothing anyone sees.
                if let Ok(req) = self.authed(self.0.http.delete(&s.url)).await {
                    let _ = req.send().await;
                }
                Ok(())
            }
        }
    }
}

/// An answer's body as JSON (`what` names the request, for the error).
async fn json_of(r: reqwest::Response, what: String) -> object_store::Result<serde_json::Value> {
    let body = r.bytes().await.map_err(|e| generic(format!("{what}: {}", e.without_url())))?;
    serde_json::from_slice(&body).map_err(|e| generic(format!("{what}: the answer is not JSON ({e})")))
}

/// The form body of a token request.
fn serde_urlencode(form: &[(&str, &str)]) -> String {
    form.iter().map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v))).collect::<Vec<_>>().join("&")
}

/// `bytes::Bytes`, named through the crate that hands it to us.
mod bytes_of {
    pub type Bytes = <object_store::PutPayload as IntoIterator>::Item;
}

/// The credentials of a real bucket, first found (module docs), and the address a
/// service-account key names for the store (`gcs_base_url`, as object_store reads it: a
/// private endpoint), if any.
fn credentials(settings: &[(String, String)]) -> Result<(Auth, Option<String>), String> {
    if let Some(t) = setting(settings, "GOOGLE_OAUTH_ACCESS_TOKEN") {
        return Ok((Auth::Token(t.trim().to_string()), None));
    }
    let key = match setting(settings, "GOOGLE_SERVICE_ACCOUNT_KEY") {
        Some(k) => Some(("GOOGLE_SERVICE_ACCOUNT_KEY".to_string(), k)),
        None => ["GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_SERVICE_ACCOUNT_PATH", "GOOGLE_SERVICE_ACCOUNT"]
            .iter()
            .find_map(|n| setting(settings, n).map(|p| (n, p)))
            .map(|(n, p)| {
                std::fs::read_to_string(&p)
                    .map(|k| (format!("{n} ({p})"), k))
                    .map_err(|e| format!("cannot read the service-account key {n} names ({p}): {e}"))
            })
            .transpose()?,
    };
    match key {
        Some((from, text)) => service_account(&from, &text),
        None => Ok((
            Auth::Metadata {
                host: setting(settings, "GCE_METADATA_HOST").unwrap_or_else(|| METADATA.to_string()),
                cached: Cached::default(),
            },
            None,
        )),
    }
}

/// A service-account key's email, private key and token endpoint, and its `gcs_base_url`.
fn service_account(from: &str, text: &str) -> Result<(Auth, Option<String>), String> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("{from} is not a service-account key in JSON (line {}): download one with `gcloud iam service-accounts keys create`", e.line()))?;
    if v["type"].as_str() != Some("service_account") {
        return Err(format!(
            "{from} is a `{}` credential, not a service account's key: give a service-account key, or a token in GOOGLE_OAUTH_ACCESS_TOKEN (`gcloud auth print-access-token`)",
            crate::util::visible(v["type"].as_str().unwrap_or("?"))
        ));
    }
    let (Some(email), Some(pem)) = (v["client_email"].as_str(), v["private_key"].as_str()) else {
        return Err(format!("{from} lacks client_email or private_key"));
    };
    let key = openssl::pkey::PKey::private_key_from_pem(pem.as_bytes())
        .map_err(|_| format!("{from}: its private_key is not a PEM private key"))?;
    let base = match v["gcs_base_url"].as_str() {
        Some(b) if b.starts_with("https://") || b.starts_with("http://") => Some(b.trim_end_matches('/').to_string()),
        Some(b) => return Err(format!("{from}: its gcs_base_url `{}` is not an http(s) URL", crate::util::visible(b))),
        None => None,
    };
    let auth = Auth::Key {
        email: email.to_string(),
        key,
        token_uri: v["token_uri"].as_str().unwrap_or("https://oauth2.googleapis.com/token").to_string(),
        cached: Cached::default(),
    };
    Ok((auth, base))
}

/// The signed JWT (RS256) a service account exchanges for a token at `aud`, issued at `now`.
fn assertion(
    email: &str,
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
    aud: &str,
    now: i64,
) -> Result<String, openssl::error::ErrorStack> {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let header = serde_json::json!({ "alg": "RS256", "typ": "JWT" });
    let claims = serde_json::json!({ "iss": email, "scope": SCOPE, "aud": aud, "iat": now, "exp": now + 3600 });
    let signed = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), key)?;
    signer.update(signed.as_bytes())?;
    Ok(format!("{signed}.{}", b64(&signer.sign_to_vec()?)))
}

/// The `Range` header of a read, and the bytes it asks for when known.
fn range_header(r: &GetRange) -> String {
    match r {
        GetRange::Bounded(r) => format!("bytes={}-{}", r.start, r.end.saturating_sub(1)),
        GetRange::Offset(o) => format!("bytes={o}-"),
        GetRange::Suffix(n) => format!("bytes=-{n}"),
    }
}

/// The object's size and the range an answer holds, from its `Content-Range` (`bytes a-b/n`)
/// or its length.
fn answered_range(h: &reqwest::header::HeaderMap, len: Option<u64>) -> Option<(std::ops::Range<u64>, u64)> {
    if let Some(cr) = h.get("content-range").and_then(|v| v.to_str().ok()) {
        let (span, total) = cr.strip_prefix("bytes ")?.split_once('/')?;
        let (a, b) = span.split_once('-')?;
        let (a, b, total) = (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?, total.parse::<u64>().ok()?);
        return Some((a..b + 1, total));
    }
    len.map(|n| (0..n, n))
}

#[async_trait::async_trait]
impl object_store::ObjectStore for Gcs {
    async fn put_opts(&self, location: &Key, payload: PutPayload, opts: PutOptions) -> object_store::Result<PutResult> {
        let mut q = vec![("uploadType", "media".to_string()), ("name", location.to_string())];
        match &opts.mode {
            object_store::PutMode::Overwrite => {}
            // Refused by the store (412) when the name is taken: never a replacement.
            object_store::PutMode::Create => q.push(("ifGenerationMatch", "0".into())),
            object_store::PutMode::Update(v) => {
                q.push(("ifGenerationMatch", v.e_tag.clone().or_else(|| v.version.clone()).unwrap_or_default()))
            }
        }
        let bytes: bytes_of::Bytes = payload.into();
        let req =
            self.0.http.post(self.uploads()).query(&q).header("Content-Type", "application/octet-stream").body(bytes);
        let r = match self.send("writing", location.as_ref(), req).await {
            Err(object_store::Error::Precondition { path, source }) if opts.mode == object_store::PutMode::Create => {
                return Err(object_store::Error::AlreadyExists { path, source })
            }
            r => r?,
        };
        let v: serde_json::Value = json_of(r, format!("writing {location}")).await?;
        let g = v["generation"].as_str().map(str::to_string);
        Ok(PutResult { e_tag: g.clone(), version: g })
    }

    async fn put_multipart_opts(
        &self,
        location: &Key,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        let class = opts.attributes.get(&object_store::Attribute::StorageClass).map(|v| v.as_ref().to_string());
        let id = self.start(location, class).await?;
        Ok(Box::new(Upload { gcs: self.clone(), key: location.clone(), id, next: 0 }))
    }

    async fn get_opts(&self, location: &Key, options: GetOptions) -> object_store::Result<GetResult> {
        let pin: Vec<(&str, &str)> =
            options.if_match.as_deref().map(|g| ("ifGenerationMatch", g)).into_iter().collect();
        if options.head {
            let r = self.send("reading", location.as_ref(), self.0.http.get(self.object(location)).query(&pin)).await?;
            let v: serde_json::Value = json_of(r, format!("reading {location}")).await?;
            let meta = self.meta(&v)?;
            return Ok(GetResult {
                payload: object_store::GetResultPayload::Stream(futures_util::stream::empty().boxed()),
                range: 0..meta.size,
                meta,
                attributes: Default::default(),
            });
        }
        let mut req = self.0.http.get(self.object(location)).query(&[("alt", "media")]).query(&pin);
        if let Some(r) = &options.range {
            req = req.header("Range", range_header(r));
        }
        let r = self.send("reading", location.as_ref(), req).await?;
        let h = r.headers().clone();
        let (range, size) = answered_range(&h, r.content_length())
            .ok_or_else(|| generic(format!("reading {location}: the answer says neither its range nor its length")))?;
        // The generation the bytes are of: the store's header, else the one asked for.
        let generation = h
            .get("x-goog-generation")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| options.if_match.clone());
        let last_modified = h.get("last-modified").and_then(|v| v.to_str().ok()).and_then(httpdate).unwrap_or_default();
        let meta = ObjectMeta {
            location: location.clone(),
            last_modified,
            size,
            e_tag: generation.clone(),
            version: generation,
        };
        let shown = location.to_string();
        let body = futures_util::stream::try_unfold(r, move |mut r| {
            let shown = shown.clone();
            async move {
                match r.chunk().await {
                    Ok(Some(b)) => Ok(Some((b, r))),
                    Ok(None) => Ok(None),
                    Err(e) => Err(unsent("reading", &shown, e)),
                }
            }
        });
        Ok(GetResult {
            payload: object_store::GetResultPayload::Stream(body.boxed()),
            meta,
            range,
            attributes: Default::default(),
        })
    }

    async fn delete(&self, location: &Key) -> object_store::Result<()> {
        self.send("deleting", location.as_ref(), self.0.http.delete(self.object(location))).await.map(|_| ())
    }

    fn list(&self, prefix: Option<&Key>) -> futures_util::stream::BoxStream<'static, object_store::Result<ObjectMeta>> {
        // A prefix is a folder: `a/b` lists `a/b/...`, not `a/bc` (object_store's meaning).
        let prefix = prefix.map(|p| format!("{p}/")).filter(|p| p != "/");
        let gcs = self.clone();
        let pages = futures_util::stream::try_unfold(Some(None::<String>), move |token| {
            let (gcs, prefix) = (gcs.clone(), prefix.clone());
            async move {
                let Some(token) = token else { return Ok::<_, object_store::Error>(None) };
                let v = gcs.page(prefix.as_deref(), false, token.as_deref()).await?;
                let items = v["items"].as_array().cloned().unwrap_or_default();
                let metas: Vec<object_store::Result<ObjectMeta>> = items.iter().map(|o| gcs.meta(o)).collect();
                let next = v["nextPageToken"].as_str().map(|t| Some(t.to_string()));
                Ok(Some((futures_util::stream::iter(metas), next)))
            }
        });
        pages.try_flatten().boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Key>) -> object_store::Result<ListResult> {
        let prefix = prefix.map(|p| format!("{p}/")).filter(|p| p != "/");
        let mut out = ListResult { common_prefixes: vec![], objects: vec![] };
        let mut token: Option<String> = None;
        loop {
            let v = self.page(prefix.as_deref(), true, token.as_deref()).await?;
            for o in v["items"].as_array().into_iter().flatten() {
                out.objects.push(self.meta(o)?);
            }
            for p in v["prefixes"].as_array().into_iter().flatten().filter_map(|p| p.as_str()) {
                out.common_prefixes.push(Key::from(p.trim_end_matches('/')));
            }
            match v["nextPageToken"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => return Ok(out),
            }
        }
    }

    async fn copy(&self, from: &Key, to: &Key) -> object_store::Result<()> {
        self.rewrite(from, to, false).await
    }

    async fn copy_if_not_exists(&self, from: &Key, to: &Key) -> object_store::Result<()> {
        self.rewrite(from, to, true).await
    }
}

impl Gcs {
    /// A copy inside the store (`rewriteTo`, asked again with its token until done): whole or
    /// not at all.
    async fn rewrite(&self, from: &Key, to: &Key, new: bool) -> object_store::Result<()> {
        let url = format!(
            "{}/rewriteTo/b/{}/o/{}",
            self.object(from),
            percent_encode(&self.0.bucket),
            percent_encode(to.as_ref())
        );
        let mut token: Option<String> = None;
        loop {
            let mut q: Vec<(&str, &str)> = vec![];
            if new {
                q.push(("ifGenerationMatch", "0"));
            }
            if let Some(t) = &token {
                q.push(("rewriteToken", t));
            }
            let shown = format!("{from} to {to}");
            let r = match self.send("copying", &shown, self.0.http.post(&url).query(&q).body("")).await {
                Err(object_store::Error::Precondition { path, source }) if new => {
                    return Err(object_store::Error::AlreadyExists { path, source })
                }
                r => r?,
            };
            let v: serde_json::Value = json_of(r, format!("copying {shown}")).await?;
            match (v["done"].as_bool(), v["rewriteToken"].as_str()) {
                (Some(false), Some(t)) => token = Some(t.to_string()),
                _ => return Ok(()),
            }
        }
    }
}

/// An HTTP date (`Last-Modified`) as object_store's time.
fn httpdate<T: From<std::time::SystemTime>>(text: &str) -> Option<T> {
    let f = time::format_description::well_known::Rfc2822;
    let t = time::OffsetDateTime::parse(&text.replace("GMT", "+0000"), &f).ok()?;
    Some(T::from(std::time::SystemTime::from(t)))
}

#[async_trait::async_trait]
impl object_store::multipart::MultipartStore for Gcs {
    async fn create_multipart(&self, path: &Key) -> object_store::Result<object_store::MultipartId> {
        self.start(path, None).await
    }

    async fn put_part(
        &self,
        path: &Key,
        id: &object_store::MultipartId,
        part_idx: usize,
        data: PutPayload,
    ) -> object_store::Result<object_store::multipart::PartId> {
        self.part(path, id, part_idx, data).await?;
        Ok(object_store::multipart::PartId { content_id: part_idx.to_string() })
    }

    async fn complete_multipart(
        &self,
        path: &Key,
        id: &object_store::MultipartId,
        _parts: Vec<object_store::multipart::PartId>,
    ) -> object_store::Result<PutResult> {
        self.finish(path, id).await
    }

    async fn abort_multipart(&self, path: &Key, id: &object_store::MultipartId) -> object_store::Result<()> {
        self.drop_upload(path, id).await
    }
}

/// An upload started with options (a storage class): the same session, as object_store's
/// `MultipartUpload`.
struct Upload {
    gcs: Gcs,
    key: Key,
    id: String,
    next: usize,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "upload of {}", self.key)
    }
}

#[async_trait::async_trait]
impl object_store::MultipartUpload for Upload {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        let (gcs, key, id, idx) = (self.gcs.clone(), self.key.clone(), self.id.clone(), self.next);
        self.next += 1;
        Box::pin(async move { gcs.part(&key, &id, idx, data).await })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.gcs.finish(&self.key, &self.id).await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.gcs.drop_upload(&self.key, &self.id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service account's token request is a JWT signed RS256 by its key, for the token
    /// endpoint, asking for read and write on objects: verified here with the public half.
    #[test]
    fn a_service_accounts_assertion_is_signed_rs256_with_its_key() {
        use base64::Engine;
        let rsa = openssl::rsa::Rsa::generate(2048).expect("a key");
        let key = openssl::pkey::PKey::from_rsa(rsa).expect("a pkey");
        let jwt = assertion("sa@p.iam.gserviceaccount.com", &key, "https://oauth2.googleapis.com/token", 1_000)
            .expect("signed");
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{jwt}");
        let d = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).expect("base64url");
        let header: serde_json::Value = serde_json::from_slice(&d(parts[0])).expect("json");
        let claims: serde_json::Value = serde_json::from_slice(&d(parts[1])).expect("json");
        assert_eq!(header["alg"], "RS256");
        assert_eq!(claims["iss"], "sa@p.iam.gserviceaccount.com");
        assert_eq!(claims["aud"], "https://oauth2.googleapis.com/token");
        assert_eq!(claims["scope"], SCOPE);
        assert_eq!(claims["exp"].as_i64(), Some(4_600));
        let public = openssl::pkey::PKey::public_key_from_pem(&key.public_key_to_pem().expect("pem")).expect("public");
        let mut v = openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &public).expect("verifier");
        v.update(format!("{}.{}", parts[0], parts[1]).as_bytes()).expect("update");
        assert!(v.verify(&d(parts[2])).expect("verify"), "the signature verifies with the key's public half");
    }

    /// A key file of another kind, a broken one, and one without its private key are each
    /// refused naming what to give instead, never echoing the file's contents.
    #[test]
    fn a_credential_that_is_not_a_service_accounts_key_is_refused_saying_what_to_give() {
        let user = r#"{"type":"authorized_user","refresh_token":"1//secret-refresh"}"#;
        let e = service_account("GOOGLE_APPLICATION_CREDENTIALS (/k.json)", user).err().expect("refused");
        assert!(e.contains("authorized_user") && e.contains("GOOGLE_OAUTH_ACCESS_TOKEN"), "{e}");
        assert!(!e.contains("secret-refresh"), "{e}");
        let e = service_account("K", "{not json").err().expect("refused");
        assert!(e.contains("line 1"), "{e}");
        let e = service_account("K", r#"{"type":"service_account","client_email":"a@b","private_key":"PEM? no"}"#)
            .err()
            .expect("refused");
        assert!(e.contains("not a PEM private key") && !e.contains("PEM? no"), "{e}");
    }

    #[test]
    fn ranges_and_answers_are_read_both_ways() {
        assert_eq!(range_header(&GetRange::Bounded(4..10)), "bytes=4-9");
        assert_eq!(range_header(&GetRange::Offset(7)), "bytes=7-");
        assert_eq!(range_header(&GetRange::Suffix(3)), "bytes=-3");
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(answered_range(&h, Some(5)), Some((0..5, 5)));
        h.insert("content-range", "bytes 1-3/6".parse().expect("header"));
        assert_eq!(answered_range(&h, Some(3)), Some((1..4, 6)));
        h.insert("content-range", "bytes x-3/6".parse().expect("header"));
        assert_eq!(answered_range(&h, Some(3)), None);
    }
}
