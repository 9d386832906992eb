//! `http.check`: a health endpoint answers with the expected status (and body).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_yaml::Value as Yaml;

use super::{check_with, typed, Field, Outputs, StepCtx, StepError, StepKind, With, WithError};

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Status {
    One(#[serde(deserialize_with = "super::de::int")] u16),
    Many(Vec<u16>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckWith {
    url: String,
    #[serde(default = "default_method")]
    method: String,
    status: Option<Status>,
    body_contains: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout", deserialize_with = "super::de::duration")]
    timeout: Duration,
}

fn default_method() -> String {
    "GET".into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl With for CheckWith {
    fn check(&self) -> Result<(), WithError> {
        let is_http = self.url.starts_with("http://") || self.url.starts_with("https://");
        if !is_http && !crate::template::is_template(&self.url) {
            return Err(WithError::new("url", format!("`{}` is not an http:// or https:// URL", self.url)));
        }
        if reqwest::Method::from_bytes(self.method.as_bytes()).is_err() {
            return Err(WithError::new("method", format!("`{}` is not an HTTP method", self.method)));
        }
        Ok(())
    }
}

pub const CHECK: StepKind = StepKind {
    name: "http.check",
    summary: "Request a URL and check the status code and, optionally, the body.",
    fields: &[
        Field { name: "url", ty: "string", required: true, doc: "http:// or https:// URL" },
        Field { name: "method", ty: "string", required: false, doc: "HTTP method (default GET)" },
        Field { name: "status", ty: "integer or list", required: false, doc: "expected status (default: any 2xx)" },
        Field { name: "body_contains", ty: "string", required: false, doc: "text the body must contain" },
        Field { name: "headers", ty: "map", required: false, doc: "request headers" },
        Field { name: "timeout", ty: "duration", required: false, doc: "request timeout (default 10s)" },
    ],
    outputs: &[
        Field { name: "status", ty: "integer", required: false, doc: "the response status" },
        Field { name: "elapsed_ms", ty: "integer", required: false, doc: "time to the full response" },
    ],
    check: check_with::<CheckWith>,
    report_log: false,
    run,
};

fn run(ctx: StepCtx, with: Yaml) -> super::BoxFuture<'static, Result<Outputs, StepError>> {
    Box::pin(async move {
        let w: CheckWith = typed(with)?;
        let client = reqwest::Client::builder()
            .timeout(w.timeout)
            .build()
            .map_err(|e| StepError::Environment(format!("cannot build an HTTP client: {e}")))?;
        let method = reqwest::Method::from_bytes(w.method.as_bytes())
            .map_err(|_| StepError::Invalid(format!("`{}` is not an HTTP method", w.method)))?;
        let mut req = client.request(method, &w.url);
        for (k, v) in &w.headers {
            req = req.header(k, v);
        }
        let started = Instant::now();
        // An unreachable endpoint is a failed health check, not a broken environment:
        // the service under test is what is down.
        let resp =
            req.send().await.map_err(|e| StepError::Failed(format!("{} {}: {}", w.method, w.url, error_chain(&e))))?;
        let status = resp.status().as_u16();
        let body = resp
            .text()
            .await
            .map_err(|e| StepError::Failed(format!("{} {}: reading the body: {}", w.method, w.url, error_chain(&e))))?;
        let elapsed = started.elapsed();
        ctx.log(format!("{} {} -> {status} in {} ms", w.method, w.url, elapsed.as_millis()));
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
            return Err(StepError::Failed(format!("{} {} answered {status}, expected {want}", w.method, w.url)));
        }
        if let Some(needle) = &w.body_contains {
            if !body.contains(needle.as_str()) {
                let preview: String = body.chars().take(200).collect();
                return Err(StepError::Failed(format!(
                    "{} {}: body does not contain `{needle}` (body starts: {preview:?})",
                    w.method, w.url
                )));
            }
        }
        let mut o = Outputs::new();
        o.insert("status".into(), status.into());
        o.insert("elapsed_ms".into(), (elapsed.as_millis() as u64).into());
        Ok(o)
    })
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
