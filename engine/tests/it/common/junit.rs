//! A JUnit file read with an XML parser: each testcase with its suite, status, message and
//! text, so a test asserts on a case's own fields and never on a `split` of the file (which
//! took a name out of another case's text, and saw a `<failure` inside CDATA as a failure).

use std::path::Path;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// What a testcase says of its step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Passed,
    Failure,
    Error,
    Skipped,
}

impl Status {
    /// The element's name (`passed` when there is none), as the tests compare it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failure => "failure",
            Status::Error => "error",
            Status::Skipped => "skipped",
        }
    }
}

/// One `<testcase>`.
#[derive(Debug, Clone)]
pub struct Case {
    /// The `name` of the `<testsuite>` it is in.
    pub suite: String,
    pub name: String,
    pub classname: String,
    pub status: Status,
    /// Its `time` attribute, in seconds (0 when absent).
    pub time: f64,
    /// The `message` of its `<failure>`, `<error>` or `<skipped>`.
    pub message: String,
    /// The `type` of its `<failure>`, `<error>` or `<skipped>` (`unproven`: a check with no
    /// ground truth), empty when none.
    pub kind: String,
    /// The text inside its `<failure>` or `<error>`.
    pub detail: String,
    /// Its `<system-out>`.
    pub system_out: String,
}

/// A whole JUnit file: its suites and testcases in document order and each suite's
/// `<system-err>`.
#[derive(Debug, Clone, Default)]
pub struct Junit {
    /// Each `<testsuite>`'s name and `time`.
    pub suites: Vec<(String, f64)>,
    pub cases: Vec<Case>,
    pub system_err: Vec<String>,
    /// Each suite's own `<system-out>` (`content: unproven`), apart from its cases'.
    pub suite_out: Vec<String>,
}

impl Junit {
    /// The file at `path`; a missing file or invalid XML fails the test, naming the file.
    pub fn read(path: &Path) -> Junit {
        let xml = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Junit::parse(&xml).unwrap_or_else(|e| panic!("{}: not valid JUnit XML: {e}\n{xml}", path.display()))
    }

    pub fn parse(xml: &str) -> Result<Junit, String> {
        let mut reader = Reader::from_str(xml);
        let mut out = Junit::default();
        let mut suite = String::new();
        // Where text goes: the open testcase's detail or system-out, or a suite's system-err.
        let mut into: Option<Into> = None;
        let mut text = String::new();
        // A suite's own `<system-out>` follows its cases: it is not the last case's.
        let mut in_case = false;
        loop {
            let event = reader.read_event().map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?;
            match event {
                Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"testsuite" => {
                    suite = attr(&e, "name")?;
                    out.suites.push((suite.clone(), seconds(&e)?));
                }
                Event::Start(e) if e.name().as_ref() == b"testcase" => {
                    in_case = true;
                    out.cases.push(case(&e, &suite)?)
                }
                Event::Empty(e) if e.name().as_ref() == b"testcase" => out.cases.push(case(&e, &suite)?),
                Event::End(e) if e.name().as_ref() == b"testcase" => in_case = false,
                Event::Start(e) | Event::Empty(e)
                    if matches!(e.name().as_ref(), b"failure" | b"error" | b"skipped") =>
                {
                    let c = out.cases.last_mut().ok_or("a result outside any testcase")?;
                    c.status = match e.name().as_ref() {
                        b"failure" => Status::Failure,
                        b"error" => Status::Error,
                        _ => Status::Skipped,
                    };
                    c.message = attr(&e, "message")?;
                    c.kind = attr(&e, "type")?;
                    into = Some(Into::Detail);
                    text.clear();
                }
                Event::Start(e) if e.name().as_ref() == b"system-out" => {
                    into = Some(Into::SystemOut);
                    text.clear();
                }
                Event::Start(e) if e.name().as_ref() == b"system-err" => {
                    into = Some(Into::SystemErr);
                    text.clear();
                }
                Event::Text(t) if into.is_some() => text.push_str(&t.xml_content().map_err(|e| e.to_string())?),
                Event::CData(t) if into.is_some() => text.push_str(&t.xml_content().map_err(|e| e.to_string())?),
                Event::GeneralRef(r) if into.is_some() => {
                    let name = r.decode().map_err(|e| e.to_string())?;
                    text.push_str(&quick_xml::escape::unescape(&format!("&{name};")).map_err(|e| e.to_string())?);
                }
                Event::End(e)
                    if matches!(
                        e.name().as_ref(),
                        b"failure" | b"error" | b"skipped" | b"system-out" | b"system-err"
                    ) =>
                {
                    let done = std::mem::take(&mut text);
                    match into.take() {
                        Some(Into::Detail) => {
                            out.cases.last_mut().ok_or("a result outside any testcase")?.detail = done
                        }
                        Some(Into::SystemOut) if !in_case => out.suite_out.push(done),
                        Some(Into::SystemOut) => {
                            if let Some(c) = out.cases.last_mut() {
                                c.system_out = done;
                            }
                        }
                        Some(Into::SystemErr) => out.system_err.push(done),
                        None => {}
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        Ok(out)
    }

    /// The first testcase whose name starts with `name` (a case is named by its step and
    /// kind, `restore [backup.restore]`).
    pub fn case(&self, name: &str) -> Option<&Case> {
        self.cases.iter().find(|c| c.name.starts_with(name))
    }

    /// That case's status as text, `absent` when there is none.
    pub fn status(&self, name: &str) -> &'static str {
        self.case(name).map(|c| c.status.as_str()).unwrap_or("absent")
    }

    /// Every case's name, message, detail and output, one after the other: what a reader of
    /// the file sees, for "is this said anywhere" checks.
    pub fn all_text(&self) -> String {
        let mut s = String::new();
        for c in &self.cases {
            for part in [&c.name, &c.message, &c.detail, &c.system_out] {
                s.push_str(part);
                s.push('\n');
            }
        }
        for e in self.system_err.iter().chain(&self.suite_out) {
            s.push_str(e);
            s.push('\n');
        }
        s
    }
}

enum Into {
    Detail,
    SystemOut,
    SystemErr,
}

fn case(e: &BytesStart<'_>, suite: &str) -> Result<Case, String> {
    Ok(Case {
        suite: suite.to_string(),
        name: attr(e, "name")?,
        classname: attr(e, "classname")?,
        status: Status::Passed,
        time: seconds(e)?,
        message: String::new(),
        kind: String::new(),
        detail: String::new(),
        system_out: String::new(),
    })
}

/// The element's `time` attribute, 0 when it has none.
fn seconds(e: &BytesStart<'_>) -> Result<f64, String> {
    let t = attr(e, "time")?;
    if t.is_empty() {
        return Ok(0.0);
    }
    t.parse().map_err(|_| format!("time={t:?} is not a number of seconds"))
}

/// An attribute's unescaped value, empty when the element has none.
fn attr(e: &BytesStart<'_>, name: &str) -> Result<String, String> {
    match e.try_get_attribute(name).map_err(|e| e.to_string())? {
        Some(a) => Ok(a.unescape_value().map_err(|e| e.to_string())?.into_owned()),
        None => Ok(String::new()),
    }
}

#[test]
fn a_failure_inside_another_cases_text_is_not_its_status() {
    let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="verify &amp; more" tests="3" time="1.5">
<testcase name="restore [backup.restore]" classname="verify" time="1.25"><system-out><![CDATA[said <failure here & "quoted"]]></system-out></testcase>
<testcase name="tables [verify.tables]" classname="verify"><failure type="failed" message="public.orders: 4999 rows &lt; 5000">detail &amp; more</failure></testcase>
<testcase name="amcheck [verify.amcheck]" classname="verify"><skipped message="after a failure"/></testcase>
</testsuite></testsuites>"#;
    let j = Junit::parse(xml).expect("parses");
    assert_eq!(j.cases.len(), 3);
    assert_eq!(j.status("restore"), "passed");
    assert_eq!(j.case("restore").map(|c| c.system_out.as_str()), Some("said <failure here & \"quoted\""));
    assert_eq!(j.status("tables"), "failure");
    assert_eq!(j.case("tables").map(|c| c.message.as_str()), Some("public.orders: 4999 rows < 5000"));
    assert_eq!(j.case("tables").map(|c| c.detail.as_str()), Some("detail & more"));
    assert_eq!(j.case("tables").map(|c| c.suite.as_str()), Some("verify & more"));
    assert_eq!(j.status("amcheck"), "skipped");
    assert_eq!(j.status("schema"), "absent");
    assert_eq!(j.suites, vec![("verify & more".to_string(), 1.5)]);
    assert_eq!(j.case("restore").map(|c| c.time), Some(1.25));
    assert_eq!(j.case("tables").map(|c| c.time), Some(0.0));
    assert!(Junit::parse("<testsuite><testcase name=\"x\"></testsuite>").is_err(), "mismatched tags are an error");
}
