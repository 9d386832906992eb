//! `http.check`: a health endpoint answers with the expected status (and body).
//!
//! Requests can carry a method, headers and a body (raw or a form), and the checks of one
//! run share a cookie jar, so a smoke test can log in and then call a page that needs the
//! session, as the classic runbooks' `curl -c jar -b jar` sequences do. Redirects are
//! followed here, hop by hop, so a cookie set on a login's redirect is kept. Cookie values
//! and bodies are never logged: they are often credentials.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Fields, step, StepCtx, StepError, With, WithError};

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Status {
    One(#[serde(deserialize_with = "super::de::int")] u16),
    Many(Vec<u16>),
}

/// One URL, or several: a list, or one text of URLs separated by spaces (a `--var` holds
/// one text; a URL never holds a raw space).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Urls {
    One(String),
    Many(Vec<String>),
}

impl Urls {
    fn list(&self) -> Vec<String> {
        let texts = match self {
            Urls::One(u) => std::slice::from_ref(u),
            Urls::Many(l) => l.as_slice(),
        };
        texts.iter().flat_map(|t| t.split_whitespace()).map(str::to_string).collect()
    }
}

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct CheckWith {
    /// http:// or https:// URL, or several (a list, or separated by spaces): each is requested
    /// in turn and each must pass
    #[field(ty = "string or list")]
    url: Urls,
    /// PEM file of the CA certificates that sign the endpoint's certificate (a private CA or
    /// a self-signed certificate: `curl --cacert`), trusted besides the system's
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    ca_file: Option<String>,
    /// PEM file of a client certificate to present (mutual TLS), with `client_key`
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    client_cert: Option<String>,
    /// PEM file of the client certificate's private key
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    client_key: Option<String>,
    /// do not verify the endpoint's certificate at all (`curl -k`): a `warning:` in the
    /// step's log, so in every report; prefer `ca_file`
    #[serde(default, deserialize_with = "super::de::boolean")]
    insecure: bool,
    /// HTTP method (default GET)
    #[serde(default = "default_method")]
    method: String,
    /// expected status (default: any 2xx)
    #[field(ty = "integer or list")]
    status: Option<Status>,
    /// text the body must contain
    body_contains: Option<String>,
    /// request headers
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// request body
    #[serde(default, deserialize_with = "super::de::opt_text")]
    body: Option<String>,
    /// form fields, sent urlencoded (instead of body)
    #[serde(default)]
    form: BTreeMap<String, String>,
    /// use the run's cookie jar, shared by its http.check steps (default true)
    #[serde(default = "yes", deserialize_with = "super::de::boolean")]
    cookies: bool,
    /// request timeout (default 10s)
    #[serde(default = "default_timeout", deserialize_with = "super::de::duration")]
    timeout: Duration,
}

fn yes() -> bool {
    true
}

fn default_method() -> String {
    "GET".into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl With for CheckWith {
    fn check(&self) -> Result<(), WithError> {
        // A template is checked once rendered (its spaces are not between URLs).
        let texts = match &self.url {
            Urls::One(u) => vec![u.clone()],
            Urls::Many(l) => l.clone(),
        };
        if !texts.iter().any(|t| crate::template::is_template(t)) {
            let urls = self.url.list();
            if urls.is_empty() {
                return Err(WithError::new("url", "no URL given"));
            }
            for url in urls {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(WithError::new("url", format!("`{url}` is not an http:// or https:// URL")));
                }
            }
        }
        let given = |o: &Option<String>| o.as_deref().is_some_and(|v| !v.trim().is_empty());
        if given(&self.client_cert) != given(&self.client_key) {
            return Err(WithError::new(
                if given(&self.client_cert) { "client_key" } else { "client_cert" },
                "a client certificate needs both `client_cert` and `client_key`",
            ));
        }
        if reqwest::Method::from_bytes(self.method.as_bytes()).is_err() {
            return Err(WithError::new("method", format!("`{}` is not an HTTP method", self.method)));
        }
        if self.body.is_some() && !self.form.is_empty() {
            return Err(WithError::new("form", "give either `body` or `form`, not both"));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct CheckOutputs {
    /// the response status
    status: u16,
    /// time to the full response
    elapsed_ms: u64,
}

/// Request a URL (method, headers, body or form; redirects followed; cookies kept in a jar shared by the run's checks)
/// and check the status code and, optionally, the body.
#[step(kind = Check, name = "http.check")]
async fn check(ctx: StepCtx, w: CheckWith) -> Result<CheckOutputs, StepError> {
    let client = client(&ctx, &w)?;
    let (mut last, mut total) = (CheckOutputs::default(), 0);
    for url in w.url.list() {
        last = check_one(&ctx, &w, &client, &url).await?;
        total += last.elapsed_ms;
    }
    Ok(CheckOutputs { status: last.status, elapsed_ms: total })
}

/// The client of a step's requests: its timeout, redirects left to `check_one`, and the TLS
/// settings (CA file, client certificate, or no verification at all, said as a warning).
fn client(ctx: &StepCtx, w: &CheckWith) -> Result<reqwest::Client, StepError> {
    let read = |field: &str, p: &str| {
        let path = ctx.local(field, p)?;
        std::fs::read(&path)
            .map_err(|e| StepError::field(format!("with.{field}"), format!("cannot read {}: {e}", path.display())))
    };
    // Redirects by hand: a login's Set-Cookie is often on its 302.
    let mut b = reqwest::Client::builder().timeout(w.timeout).redirect(reqwest::redirect::Policy::none());
    if let Some(p) = w.ca_file.as_deref().filter(|p| !p.trim().is_empty()) {
        let certs = reqwest::Certificate::from_pem_bundle(&read("ca_file", p)?)
            .map_err(|e| StepError::field("with.ca_file", format!("{p}: not PEM certificates: {e}")))?;
        if certs.is_empty() {
            return Err(StepError::field("with.ca_file", format!("{p} holds no PEM certificate")));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if let (Some(c), Some(k)) = (
        w.client_cert.as_deref().filter(|p| !p.trim().is_empty()),
        w.client_key.as_deref().filter(|p| !p.trim().is_empty()),
    ) {
        let mut pem = read("client_cert", c)?;
        pem.push(b'\n');
        pem.extend(read("client_key", k)?);
        let id = reqwest::Identity::from_pem(&pem)
            .map_err(|e| StepError::field("with.client_cert", format!("{c} with {k}: not a PEM certificate and key: {e}")))?;
        b = b.identity(id);
    }
    if w.insecure {
        ctx.warn("insecure: true: the endpoint's TLS certificate is NOT verified, so anyone on the path can answer for it; give its CA with `ca_file` instead");
        b = b.danger_accept_invalid_certs(true);
    }
    b.build().map_err(|e| StepError::environment(format!("cannot build an HTTP client: {}", error_chain(&e))))
}

async fn check_one(ctx: &StepCtx, w: &CheckWith, client: &reqwest::Client, target: &str) -> Result<CheckOutputs, StepError> {
    let mut method = reqwest::Method::from_bytes(w.method.as_bytes())
        .map_err(|_| StepError::invalid(format!("`{}` is not an HTTP method", w.method)))?;
    let jar = w.cookies.then(|| jar_for(ctx));
    let mut url = reqwest::Url::parse(target).map_err(|e| StepError::invalid(format!("`{target}`: {e}")))?;
    let mut with_body = true;
    let started = Instant::now();
    let mut hops = 0;
    let resp = loop {
        let mut req = client.request(method.clone(), url.clone());
        for (k, v) in &w.headers {
            req = req.header(k, v);
        }
        if let Some(jar) = &jar {
            let explicit = w.headers.keys().any(|k| k.eq_ignore_ascii_case("cookie"));
            if let Some(c) = jar.lock().ok().and_then(|j| j.header_for(&url)).filter(|_| !explicit) {
                req = req.header(reqwest::header::COOKIE, c);
            }
        }
        if with_body {
            if let Some(b) = &w.body {
                req = req.body(b.clone());
            } else if !w.form.is_empty() {
                req = req.form(&w.form);
            }
        }
        // An unreachable endpoint is a failed health check, not a broken environment:
        // the service under test is what is down.
        let resp = req.send().await.map_err(|e| StepError::failed(format!("{} {target}: {}", w.method, send_error(&e))))?;
        if let Some(jar) = &jar {
            if let Ok(mut j) = jar.lock() {
                for v in resp.headers().get_all(reqwest::header::SET_COOKIE) {
                    if let Ok(v) = v.to_str() {
                        j.store(&url, v);
                    }
                }
            }
        }
        let next = resp
            .status()
            .is_redirection()
            .then(|| resp.headers().get(reqwest::header::LOCATION).and_then(|l| l.to_str().ok()))
            .flatten()
            .and_then(|l| url.join(l).ok());
        match next {
            Some(next) if hops < 10 => {
                hops += 1;
                let code = resp.status().as_u16();
                // 303, and 301/302 after a POST, continue as GET without the body.
                if code == 303 || (matches!(code, 301 | 302) && method == reqwest::Method::POST) {
                    method = reqwest::Method::GET;
                    with_body = false;
                }
                url = next;
            }
            _ => break resp,
        }
    };
    let status = resp.status().as_u16();
    let body = resp
        .text()
        .await
        .map_err(|e| StepError::failed(format!("{} {}: reading the body: {}", w.method, target, error_chain(&e))))?;
    let elapsed = started.elapsed();
    ctx.log(format!("{} {target} -> {status} in {} ms", w.method, elapsed.as_millis()));
    let ok = match &w.status {
        None => (200..300).contains(&status),
        Some(Status::One(s)) => status == *s,
        Some(Status::Many(list)) => list.contains(&status),
    };
    if !ok {
        let want = match &w.status {
            None => "a 2xx status".to_string(),
            Some(Status::One(s)) => s.to_string(),
            Some(Status::Many(l)) => format!("one of {l:?}"),
        };
        return Err(StepError::failed(format!("{} {} answered {status}, expected {want}", w.method, target)));
    }
    if let Some(needle) = &w.body_contains {
        if !body.contains(needle.as_str()) {
            let preview: String = body.chars().take(200).collect();
            return Err(StepError::failed(format!(
                "{} {}: body does not contain `{needle}` (body starts: {preview:?})",
                w.method, target
            )));
        }
    }
    Ok(CheckOutputs { status, elapsed_ms: elapsed.as_millis() as u64 })
}

/// Why a request got no answer; a certificate that does not verify says what to give.
fn send_error(e: &reqwest::Error) -> String {
    let chain = error_chain(e);
    if chain.contains("certificate") || chain.contains("UnknownIssuer") {
        format!("{chain} (a private CA or self-signed certificate: give its CA with `ca_file`, as `curl --cacert`; or `insecure: true`, as `curl -k`, which verifies nothing)")
    } else {
        chain
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The cookies of one run: name and value per domain, as servers set them. Enough for a
/// login then a health page; not a browser (paths and expiry dates are not tracked, and a
/// cookie is dropped when a server expires it with `Max-Age=0` or sets it empty).
#[derive(Default)]
struct Jar {
    /// (domain, name) -> (value, host_only)
    cookies: BTreeMap<(String, String), (String, bool)>,
}

impl Jar {
    fn store(&mut self, url: &reqwest::Url, set_cookie: &str) {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else { return };
        let (name, value) = (name.trim().to_string(), value.trim().to_string());
        let mut domain: Option<String> = None;
        let mut expired = value.is_empty();
        for attr in parts {
            let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
            match k.trim().to_ascii_lowercase().as_str() {
                "domain" => {
                    let d = v.trim().trim_start_matches('.').to_ascii_lowercase();
                    // A server may only set cookies for its own domain: others are ignored.
                    if d.is_empty() {
                        continue;
                    }
                    if host != d && !host.ends_with(&format!(".{d}")) {
                        return;
                    }
                    domain = Some(d);
                }
                "max-age" => expired |= v.trim().parse::<i64>().is_ok_and(|n| n <= 0),
                _ => {}
            }
        }
        let host_only = domain.is_none();
        let key = (domain.unwrap_or(host), name);
        if expired {
            self.cookies.remove(&key);
        } else {
            self.cookies.insert(key, (value, host_only));
        }
    }

    fn header_for(&self, url: &reqwest::Url) -> Option<String> {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .filter(|((d, _), (_, host_only))| *d == host || (!host_only && host.ends_with(&format!(".{d}"))))
            .map(|((_, n), (v, _))| format!("{n}={v}"))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }
}

/// Jars by run: keyed by the run's resource list, which lives exactly as long as the run;
/// the jar is forgotten when the run's resources are torn down.
static JARS: LazyLock<Mutex<HashMap<usize, Arc<Mutex<Jar>>>>> = LazyLock::new(Default::default);

fn jar_for(ctx: &StepCtx) -> Arc<Mutex<Jar>> {
    let key = Arc::as_ptr(&ctx.resources.0) as usize;
    let mut jars = JARS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(j) = jars.get(&key) {
        return j.clone();
    }
    let j = Arc::new(Mutex::new(Jar::default()));
    jars.insert(key, j.clone());
    ctx.resources.push("the cookie jar of http.check".into(), Box::new(ForgetJar(key)));
    j
}

struct ForgetJar(usize);

impl super::Teardown for ForgetJar {
    fn teardown(self: Box<Self>) -> super::BoxFuture<'static, ()> {
        Box::pin(async move {
            JARS.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.0);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Jar;

    #[test]
    fn the_jar_keeps_session_cookies_per_domain_and_forgets_expired_ones() {
        let mut jar = Jar::default();
        let login = reqwest::Url::parse("http://app.example.com/login").expect("url");
        jar.store(&login, "session=abc123; Path=/; HttpOnly");
        jar.store(&login, "wide=1; Domain=.example.com");
        jar.store(&login, "evil=1; Domain=other.org");
        let health = reqwest::Url::parse("http://app.example.com/health").expect("url");
        assert_eq!(jar.header_for(&health).as_deref(), Some("session=abc123; wide=1"));
        let api = reqwest::Url::parse("http://api.example.com/").expect("url");
        assert_eq!(jar.header_for(&api).as_deref(), Some("wide=1"));
        jar.store(&login, "session=; Max-Age=0");
        assert_eq!(jar.header_for(&health).as_deref(), Some("wide=1"));
    }
}
