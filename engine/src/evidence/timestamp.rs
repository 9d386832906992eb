//! RFC 3161 timestamps of evidence records: a time-stamping authority (TSA) signs the
//! sha256 of each record file with its own clock, so a record's time does not rest on the
//! signer's word. The request and the checks are made by the openssl command line (`openssl
//! ts`), the same commands the auditor's `verify.sh` runs: what pgdrill accepts, the auditor
//! can check with openssl alone.

use std::path::Path;
use std::time::Duration;

/// The timestamp file of record `sequence`, beside it.
pub fn tsr_name(sequence: u64) -> String {
    format!("{sequence:08}.tsr")
}

fn openssl(args: &[&std::ffi::OsStr]) -> Result<std::process::Output, String> {
    let mut cmd = crate::child::command("openssl");
    cmd.arg("ts").args(args);
    crate::child::output(&mut cmd).map_err(|e| format!("cannot run openssl ts: {e} (install openssl)"))
}

/// Ask the TSA at `url` to timestamp the sha256 `digest` (hex); the response's DER, checked
/// to be a granted timestamp of that digest (its signature is checked by `verify`, against
/// the TSA's CA the auditor trusts).
pub async fn request(url: &str, digest: &str) -> Result<Vec<u8>, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
    let query = dir.path().join("q.tsq");
    let out = openssl(&[
        "-query".as_ref(),
        "-sha256".as_ref(),
        "-digest".as_ref(),
        digest.as_ref(),
        "-cert".as_ref(),
        "-out".as_ref(),
        query.as_os_str(),
    ])?;
    if !out.status.success() {
        return Err(format!("openssl ts -query: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let body = std::fs::read(&query).map_err(|e| format!("reading the query: {e}"))?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| format!("an HTTP client: {e}"))?;
    let resp = client
        .post(url)
        .header("Content-Type", "application/timestamp-query")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("no answer: {}", e.without_url()))?;
    if !resp.status().is_success() {
        return Err(format!("answered HTTP {}", resp.status().as_u16()));
    }
    let reply = resp.bytes().await.map_err(|e| format!("reading its answer: {}", e.without_url()))?.to_vec();
    let path = dir.path().join("r.tsr");
    std::fs::write(&path, &reply).map_err(|e| format!("writing the answer: {e}"))?;
    let text = openssl(&["-reply".as_ref(), "-in".as_ref(), path.as_os_str(), "-text".as_ref()])?;
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    if !text.contains("Status: Granted") {
        return Err("its answer is not a granted timestamp".into());
    }
    if message_imprint(&text) != digest.to_ascii_lowercase() {
        return Err("its timestamp is not of this record's sha256".into());
    }
    Ok(reply)
}

/// The hashed message of `openssl ts ... -text` output, hex: the hex dump lines under
/// "Message data:" (`    0000 - 2d 71 16 42 b7 26 b0 44-01 62 ...   -q.B.&.D`).
fn message_imprint(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().skip_while(|l| !l.trim_start().starts_with("Message data:")).skip(1);
    while let Some(l) = lines.next().filter(|l| l.trim_start().get(4..7) == Some(" - ")) {
        let bytes = l.trim_start().get(7..).unwrap_or("");
        // The hex part ends where the three spaces before the printable column start.
        let hex = bytes.split("   ").next().unwrap_or("");
        out.extend(hex.chars().filter(char::is_ascii_hexdigit));
    }
    out.to_ascii_lowercase()
}

/// Check the timestamp `tsr` of a record whose sha256 is `digest` against the TSA's CA
/// certificates `ca` (PEM): the time it states, or why it does not verify.
pub fn verify(tsr: &Path, digest: &str, ca: &Path) -> Result<String, String> {
    let out = openssl(&[
        "-verify".as_ref(),
        "-digest".as_ref(),
        digest.as_ref(),
        "-in".as_ref(),
        tsr.as_os_str(),
        "-CAfile".as_ref(),
        ca.as_os_str(),
    ])?;
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() || !said.contains("Verification: OK") {
        let why = said.lines().find(|l| l.contains("error") || l.contains("Verification")).unwrap_or("").trim();
        return Err(format!("its timestamp does not verify with the TSA's CA ({})", crate::util::one_line(why)));
    }
    let text = openssl(&["-reply".as_ref(), "-in".as_ref(), tsr.as_os_str(), "-text".as_ref()])?;
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    Ok(text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Time stamp:"))
        .map(|t| t.trim().to_string())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_message_imprint_is_read_from_openssl_s_hex_dump() {
        let text = "Version: 1\nHash Algorithm: sha256\nMessage data:\n    0000 - 2d 71 16 42 b7 26 b0 44-01 62 7c a9 fb ac 32 f5   -q.B.&.D.b|...2.\n    0010 - c8 53 0f b1 90 3c c4 db-02 25 87 17 92 1a 48 81   .S...<...%....H.\nPolicy OID: unspecified\n";
        assert_eq!(super::message_imprint(text), "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881");
        assert_eq!(super::message_imprint("Status: Granted."), "");
    }
}
