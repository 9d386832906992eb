//! Schedules as files people commit: a fleet's cadences as crontab lines, systemd service
//! and timer units, or Kubernetes CronJobs running Indexed Jobs (one pod per target).
//!
//! Cron and systemd disagree on one point: when both day of month and day of week are
//! restricted, cron fires on either, systemd only on both. Such an expression becomes two
//! `OnCalendar=` lines (one per day field), so the three outputs fire at the same times. A
//! `*/N` step in one day field with the other restricted is refused: cron implementations
//! disagree on whether it counts as restricted (Vixie cron says no, croniter yes).
//!
//! Names from the fleet file and the command line (the runbook file, the fleet path, report
//! and binary paths) become cron lines, unit files and arguments: control characters are
//! refused, and each value is quoted for the format it lands in (the shell of a cron line
//! with its `%`, systemd's `ExecStart=` with its `%` specifiers and `$` variables).

use std::fmt::Write as _;
use std::path::Path;

use super::{select, Fleet, Schedule};
use crate::util::shell_quote;

pub const CRON_HELP: &str =
    "five fields: minute hour day-of-month month day-of-week, e.g. `0 2 * * *` (02:00 daily), `30 4 * * 0` (Sundays 04:30), or @hourly/@daily/@weekly/@monthly";

/// A parsed cron expression: the set of values of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minute: Vec<u32>,
    hour: Vec<u32>,
    dom: Vec<u32>,
    month: Vec<u32>,
    /// 0 = Sunday.
    dow: Vec<u32>,
    dom_any: bool,
    dow_any: bool,
}

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const SYSTEMD_DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

impl Cron {
    pub fn parse(s: &str) -> Result<Cron, String> {
        let expanded = match s.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other if other.starts_with('@') => return Err(format!("unknown shortcut `{other}`")),
            other => other,
        };
        let f: Vec<&str> = expanded.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!("has {} fields, cron has 5", f.len()));
        }
        let minute = field(f[0], 0, 59, &[], "minute")?;
        let hour = field(f[1], 0, 23, &[], "hour")?;
        let dom = field(f[2], 1, 31, &[], "day of month")?;
        let month = field(f[3], 1, 12, &MONTHS, "month")?;
        let mut dow = field(f[4], 0, 7, &DAYS, "day of week")?;
        // 7 is Sunday too.
        if dow.contains(&7) {
            dow.retain(|d| *d != 7);
            if !dow.contains(&0) {
                dow.insert(0, 0);
            }
        }
        // Cron's rule: when both day fields are restricted a day matches either; when one is
        // `*` it must match the other. A field is restricted unless it is written `*`.
        let dom_any = f[2] == "*";
        let dow_any = f[4] == "*";
        if (f[2].starts_with("*/") && !dow_any) || (f[4].starts_with("*/") && !dom_any) {
            return Err("has a `*/N` step in one day field and restricts the other: cron implementations disagree on which days that means; list the days (`1,3,5`) instead".into());
        }
        Ok(Cron { minute, hour, dom, month, dow, dom_any, dow_any })
    }

    /// The same times as systemd OnCalendar expressions: one, or two when both day fields
    /// are restricted (cron fires when either matches; one systemd expression needs both).
    pub fn on_calendar(&self) -> Vec<String> {
        let list = |v: &[u32], full: usize| {
            if v.len() == full {
                "*".to_string()
            } else {
                v.iter().map(|x| format!("{x:02}")).collect::<Vec<_>>().join(",")
            }
        };
        let time = format!("{}:{}:00", list(&self.hour, 24), list(&self.minute, 60));
        let month = list(&self.month, 12);
        let by_dow = || {
            if self.dow.len() == 7 {
                format!("*-{month}-* {time}")
            } else {
                let days: Vec<&str> = self.dow.iter().map(|d| SYSTEMD_DAYS[*d as usize]).collect();
                format!("{} *-{month}-* {time}", days.join(","))
            }
        };
        let by_dom = || format!("*-{month}-{} {time}", list(&self.dom, 31));
        match (self.dom_any, self.dow_any) {
            (true, true) => vec![format!("*-{month}-* {time}")],
            (true, false) => vec![by_dow()],
            (false, true) => vec![by_dom()],
            (false, false) => vec![by_dom(), by_dow()],
        }
    }
}

fn value(s: &str, min: u32, max: u32, names: &[&str], what: &str) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(i as u32 + if names.len() == 12 { 1 } else { 0 });
    }
    let v: u32 = s.parse().map_err(|_| format!("{what} `{s}` is not a number"))?;
    if v < min || v > max {
        return Err(format!("{what} {v} is outside {min}-{max}"));
    }
    Ok(v)
}

fn field(s: &str, min: u32, max: u32, names: &[&str], what: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => {
                let st: u32 = st.parse().map_err(|_| format!("{what} step `{st}` is not a number"))?;
                if st == 0 {
                    return Err(format!("{what} step is 0"));
                }
                (r, st)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, if max == 7 { 6 } else { max })
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a, min, max, names, what)?, value(b, min, max, names, what)?);
            if a > b {
                return Err(format!("{what} range {a}-{b} runs backwards"));
            }
            (a, b)
        } else {
            let a = value(range, min, max, names, what)?;
            (a, if step > 1 { max } else { a })
        };
        let mut v = lo;
        while v <= hi {
            out.push(v);
            v += step;
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Where the generated files put things.
#[derive(Debug, Clone)]
pub struct Options {
    /// The pgdrill binary (cron, systemd) or image (Kubernetes).
    pub binary: String,
    pub image: String,
    /// The fleet file as the scheduled command names it.
    pub fleet_path: String,
    /// Reports go to `<reports>/<schedule>`.
    pub reports: String,
    /// A file of `NAME=value` lines holding the secrets (cron, systemd).
    pub env_file: String,
    /// Kubernetes: namespace, the Secret with the variables, the claim that persists
    /// reports (and local backups).
    pub namespace: String,
    pub secret: String,
    pub claim: String,
}

impl Options {
    /// Refuse values no generated file can carry: a control character (a newline would end
    /// a cron line or a unit setting and start another).
    pub fn check(&self) -> Result<(), String> {
        for (what, v) in [
            ("--binary", &self.binary),
            ("--image", &self.image),
            ("--fleet-path", &self.fleet_path),
            ("--reports", &self.reports),
            ("--env-file", &self.env_file),
            ("--namespace", &self.namespace),
            ("--secret", &self.secret),
            ("--claim", &self.claim),
        ] {
            if let Some(why) = unsafe_name(v) {
                return Err(format!("{what} `{}` {why}", one_line(v)));
            }
        }
        Ok(())
    }
}

/// `s` on one line: control characters (newlines too) shown as `\xNN`, for comments and
/// descriptions.
pub fn one_line(s: &str) -> String {
    crate::util::one_line(s).into_owned()
}

/// Why a name cannot become part of a generated file, if it cannot.
pub fn unsafe_name(s: &str) -> Option<&'static str> {
    if s.chars().any(char::is_control) {
        return Some("holds a control character (a newline would start another line of a generated crontab or unit)");
    }
    // Cron implementations disagree on what a backslash before `%` or `\\` means.
    s.contains('\\').then_some("holds a backslash, which cron implementations read differently")
}

/// A path for the shell's `.`, which searches PATH for a name without a slash.
fn dot_path(p: &str) -> String {
    if p.contains('/') {
        p.to_string()
    } else {
        format!("./{p}")
    }
}

/// One argument of a systemd `ExecStart=`: quoted when it is not plain, with `\` and `"`
/// escaped, `%` doubled (specifiers) and `$` doubled (variable expansion).
fn systemd_arg(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-=:@".contains(c));
    if plain {
        return s.to_string();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Free text in a unit setting (Description=, a path): one line, `%` doubled.
fn systemd_text(s: &str) -> String {
    one_line(s).replace('%', "%%")
}

fn runs(fleet: &Fleet) -> Vec<(&String, &Schedule, usize)> {
    fleet
        .schedules
        .iter()
        .map(|(n, s)| (n, s, select(fleet, &[], Some(n)).map(|t| t.len()).unwrap_or(0)))
        .filter(|(_, _, n)| *n > 0)
        .collect()
}

/// A cadence's `deadline` in seconds (checked when the fleet was loaded).
fn deadline_s(s: &Schedule) -> Option<u64> {
    s.deadline.as_deref().and_then(|d| crate::runbook::parse_duration(d).ok()).map(|d| d.as_secs())
}

fn parallel_of(s: &Schedule) -> usize {
    s.parallel.unwrap_or(1)
}

/// The first line of a generated file: the fleet it schedules and the command that wrote it.
fn generated_by(fleet: &Fleet, command: &str) -> String {
    let file = one_line(&fleet.file.display().to_string());
    format!("# pgdrill schedules for {file} (generated by `pgdrill schedule {command}`)")
}

/// A crontab: one line per cadence, each run under flock so a slow run is never overlapped
/// by the next, secrets read from the environment file.
pub fn crontab(fleet: &Fleet, o: &Options) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", generated_by(fleet, "cron"));
    let _ = writeln!(
        out,
        "# Install: crontab FILE (as the user that runs the backups). Secrets: {}",
        one_line(&o.env_file)
    );
    let _ = writeln!(out, "SHELL=/bin/sh");
    for (name, s, n) in runs(fleet) {
        let cron = Cron::parse(&s.cron).map(|_| s.cron.clone()).unwrap_or_default();
        let _ = writeln!(out, "# {name}: runbook {} for {n} database(s)", one_line(&s.runbook));
        // `%` ends a cron command (the rest is its stdin): escaped wherever it appears.
        let line = format!(
            "mkdir -p {rep} && set -a && . {env} && set +a && flock -n /tmp/pgdrill-{name}.lock {bin} fleet run {fleet} {rb} --schedule {name} --parallel {par} --yes --report {repn} --junit {junit} >> {log} 2>&1",
            env = shell_quote(&dot_path(&o.env_file)),
            bin = shell_quote(&o.binary),
            fleet = shell_quote(&o.fleet_path),
            rb = shell_quote(&s.runbook),
            par = parallel_of(s),
            rep = shell_quote(&o.reports),
            repn = shell_quote(&format!("{}/{name}", o.reports)),
            junit = shell_quote(&format!("{}/{name}/junit.xml", o.reports)),
            log = shell_quote(&format!("{}/{name}.log", o.reports)),
        );
        let _ = writeln!(out, "{cron} {}", line.replace('%', "\\%"));
    }
    out
}

/// systemd units: for each cadence a oneshot service and its timer, as
/// `(file name, contents)`.
pub fn systemd(fleet: &Fleet, o: &Options) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for (name, s, n) in runs(fleet) {
        let cron = Cron::parse(&s.cron).expect("checked when the fleet was loaded");
        let unit = format!("pgdrill-{name}");
        let runtime = deadline_s(s).map(|d| format!("TimeoutStartSec={}\n", d)).unwrap_or_default();
        files.push((
            format!("{unit}.service"),
            format!(
                "[Unit]\nDescription=pgdrill {name}: runbook {rbtext} for {n} database(s) of {file}\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=oneshot\nEnvironmentFile={env}\nExecStart={bin} fleet run {fleet} {rb} --schedule {name} --parallel {par} --yes --report {rep} --junit {junit}\n{runtime}# SIGTERM lets running targets roll back before they exit.\nKillMode=mixed\nTimeoutStopSec=10min\n",
                rbtext = systemd_text(&s.runbook),
                rb = systemd_arg(&s.runbook),
                file = systemd_text(&fleet.file.display().to_string()),
                env = systemd_text(&o.env_file),
                bin = systemd_arg(&o.binary),
                fleet = systemd_arg(&o.fleet_path),
                par = parallel_of(s),
                rep = systemd_arg(&format!("{}/{name}", o.reports)),
                junit = systemd_arg(&format!("{}/{name}/junit.xml", o.reports)),
            ),
        ));
        files.push((
            format!("{unit}.timer"),
            format!(
                "[Unit]\nDescription=pgdrill {name} ({cronexpr})\n\n[Timer]\n{cal}Persistent=true\nUnit={unit}.service\n\n[Install]\nWantedBy=timers.target\n",
                cronexpr = systemd_text(&s.cron),
                cal = cron.on_calendar().iter().map(|c| format!("OnCalendar={c}\n")).collect::<String>(),
            ),
        ));
    }
    files
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// `text` as the value of the mapping key on the line before, which is indented by
/// `indent` spaces: a literal block scalar with an explicit indentation indicator (so a
/// first line that starts with spaces keeps them) and the chomping that keeps its exact
/// end. Text a block scalar cannot hold (control characters, a carriage return, a BOM)
/// becomes a double-quoted string instead.
fn yaml_block(text: &str, indent: usize) -> String {
    let printable = text.chars().all(|c| c == '\n' || c == '\t' || !(c.is_control() || c == '\u{feff}'));
    if !printable || text.is_empty() || text.lines().any(|l| l.ends_with([' ', '\t']) && l.trim().is_empty()) {
        return format!(" {}\n", yaml_str(text));
    }
    let chomp = if !text.ends_with('\n') {
        "-"
    } else if text.ends_with("\n\n") {
        "+"
    } else {
        ""
    };
    let pad = " ".repeat(indent + 2);
    let mut out = format!(" |2{chomp}\n");
    for line in text.split_inclusive('\n') {
        let body = line.strip_suffix('\n').unwrap_or(line);
        if body.is_empty() {
            out.push('\n');
        } else {
            out.push_str(&pad);
            out.push_str(body);
            out.push('\n');
        }
    }
    out
}

/// The ConfigMap key and text of each schedule's runbook that is a file beside the fleet
/// file (shipped runbooks are in the image), by schedule name.
fn runbook_files(fleet: &Fleet) -> Result<Vec<(String, String, String)>, String> {
    let mut out = Vec::new();
    for (name, s) in &fleet.schedules {
        if crate::shipped::find(&s.runbook).is_some() {
            continue;
        }
        let path = fleet.base_dir.join(&s.runbook);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!("schedule {name}: cannot read runbook {}: {e}", one_line(&path.display().to_string()))
        })?;
        // Schedule names are letters, digits, `_`, `-`, `.`: a valid ConfigMap key.
        out.push((name.clone(), format!("runbook.{name}.yaml"), text));
    }
    Ok(out)
}

/// Kubernetes manifests: the fleet file (and every runbook file its schedules name) as a
/// ConfigMap and, per cadence, a CronJob running an Indexed Job with one completion per
/// target; pod N runs target N of the cadence (`--index $(JOB_COMPLETION_INDEX)`), so one
/// failing database never stops another. Pods meet Pod Security "restricted".
pub fn kubernetes(fleet: &Fleet, fleet_text: &str, o: &Options) -> Result<String, String> {
    let mut out = String::new();
    let fleet_name =
        Path::new(&o.fleet_path).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or("fleet.yaml".into());
    let fleet_name = if fleet_name.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
        fleet_name
    } else {
        "fleet.yaml".to_string()
    };
    let runbooks = runbook_files(fleet)?;
    let _ = writeln!(out, "{}", generated_by(fleet, "kubernetes"));
    let _ = writeln!(
        out,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: pgdrill-fleet\n  namespace: {}\ndata:",
        yaml_str(&o.namespace)
    );
    let _ = write!(out, "  {}:{}", yaml_str(&fleet_name), yaml_block(fleet_text, 2));
    for (_, key, text) in &runbooks {
        let _ = write!(out, "  {}:{}", yaml_str(key), yaml_block(text, 2));
    }
    let r = &fleet.resources;
    let q = |q: &Option<super::Quantities>, cpu: &str, memory: &str| {
        let q = q.clone().unwrap_or_default();
        (q.cpu.unwrap_or_else(|| cpu.to_string()), q.memory.unwrap_or_else(|| memory.to_string()))
    };
    let (req_cpu, req_mem) = q(&r.requests, "250m", "256Mi");
    let (lim_cpu, lim_mem) = q(&r.limits, "2", "2Gi");
    for (name, s, n) in runs(fleet) {
        let deadline = deadline_s(s).map(|d| format!("      activeDeadlineSeconds: {}\n", d)).unwrap_or_default();
        let runbook = match runbooks.iter().find(|(n, _, _)| n == name) {
            Some((_, key, _)) => format!("/etc/pgdrill/{key}"),
            None => s.runbook.clone(),
        };
        let args = [
            "fleet".to_string(),
            "run".into(),
            format!("/etc/pgdrill/{fleet_name}"),
            runbook,
            "--schedule".into(),
            name.clone(),
            "--index".into(),
            "$(JOB_COMPLETION_INDEX)".into(),
            "--yes".into(),
            "--report".into(),
            format!("/var/lib/pgdrill/reports/{name}"),
        ];
        let args: Vec<String> = args.iter().map(|a| yaml_str(a)).collect();
        let _ = write!(
            out,
            "---\napiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: pgdrill-{name}\n  namespace: {ns}\n  labels:\n    app.kubernetes.io/name: pgdrill\n    pgdrill/schedule: {name}\nspec:\n  schedule: {cron}\n  concurrencyPolicy: Forbid\n  startingDeadlineSeconds: 3600\n  successfulJobsHistoryLimit: 3\n  failedJobsHistoryLimit: 5\n  jobTemplate:\n    spec:\n      completionMode: Indexed\n      completions: {n}\n      parallelism: {par}\n      backoffLimitPerIndex: 0\n{deadline}      ttlSecondsAfterFinished: 604800\n      template:\n        metadata:\n          labels:\n            app.kubernetes.io/name: pgdrill\n            pgdrill/schedule: {name}\n        spec:\n          restartPolicy: Never\n          automountServiceAccountToken: false\n          securityContext:\n            runAsNonRoot: true\n            runAsUser: 10001\n            runAsGroup: 10001\n            fsGroup: 10001\n            seccompProfile:\n              type: RuntimeDefault\n          containers:\n            - name: pgdrill\n              image: {image}\n              args: [{args}]\n              env:\n                - name: JOB_COMPLETION_INDEX\n                  valueFrom:\n                    fieldRef:\n                      fieldPath: metadata.annotations['batch.kubernetes.io/job-completion-index']\n              envFrom:\n                - secretRef:\n                    name: {secret}\n              resources:\n                requests:\n                  cpu: {req_cpu}\n                  memory: {req_mem}\n                limits:\n                  cpu: {lim_cpu}\n                  memory: {lim_mem}\n              securityContext:\n                allowPrivilegeEscalation: false\n                readOnlyRootFilesystem: true\n                runAsNonRoot: true\n                capabilities:\n                  drop: [\"ALL\"]\n                seccompProfile:\n                  type: RuntimeDefault\n              volumeMounts:\n                - name: fleet\n                  mountPath: /etc/pgdrill\n                  readOnly: true\n                - name: data\n                  mountPath: /var/lib/pgdrill\n                - name: tmp\n                  mountPath: /tmp\n          volumes:\n            - name: fleet\n              configMap:\n                name: pgdrill-fleet\n            - name: data\n              persistentVolumeClaim:\n                claimName: {claim}\n            - name: tmp\n              emptyDir: {{}}\n",
            ns = yaml_str(&o.namespace),
            cron = yaml_str(&s.cron),
            par = parallel_of(s).min(n),
            image = yaml_str(&o.image),
            args = args.join(", "),
            secret = yaml_str(&o.secret),
            claim = yaml_str(&o.claim),
            req_cpu = yaml_str(&req_cpu),
            req_mem = yaml_str(&req_mem),
            lim_cpu = yaml_str(&lim_cpu),
            lim_mem = yaml_str(&lim_mem),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_fields_expand_and_render_as_on_calendar() {
        assert_eq!(Cron::parse("0 2 * * *").expect("valid").on_calendar(), vec!["*-*-* 02:00:00"]);
        assert_eq!(Cron::parse("30 4 * * 0").expect("valid").on_calendar(), vec!["Sun *-*-* 04:30:00"]);
        assert_eq!(
            Cron::parse("*/15 * * * 1-5").expect("valid").on_calendar(),
            vec!["Mon,Tue,Wed,Thu,Fri *-*-* *:00,15,30,45:00"]
        );
        assert_eq!(Cron::parse("0 3 1 * *").expect("valid").on_calendar(), vec!["*-*-01 03:00:00"]);
        assert_eq!(Cron::parse("@weekly").expect("valid").on_calendar(), vec!["Sun *-*-* 00:00:00"]);
        assert_eq!(Cron::parse("0 0 * jan,jul 7").expect("valid").on_calendar(), vec!["Sun *-01,07-* 00:00:00"]);
    }

    /// Before: `0 6 1 * 0-6` (cron: the 1st OR any weekday, so daily) became a monthly timer.
    #[test]
    fn both_day_fields_restricted_become_two_calendar_lines() {
        assert_eq!(Cron::parse("0 6 1 * 0-6").expect("valid").on_calendar(), vec!["*-*-01 06:00:00", "*-*-* 06:00:00"]);
        assert_eq!(
            Cron::parse("0 2 1,15 * 1").expect("valid").on_calendar(),
            vec!["*-*-01,15 02:00:00", "Mon *-*-* 02:00:00"]
        );
        assert!(Cron::parse("0 2 */2 * 1").expect_err("ambiguous").contains("*/N"));
    }

    #[test]
    fn cron_refuses_what_cron_and_systemd_read_differently_or_not_at_all() {
        assert!(Cron::parse("0 2 * *").expect_err("invalid").contains("4 fields"));
        assert!(Cron::parse("60 2 * * *").expect_err("invalid").contains("outside 0-59"));
        assert!(Cron::parse("0 5-2 * * *").expect_err("invalid").contains("backwards"));
        assert!(Cron::parse("*/0 * * * *").expect_err("invalid").contains("step is 0"));
        assert!(Cron::parse("@sometimes").is_err());
    }
}
