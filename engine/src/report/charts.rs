//! Charts of the run history (`history.jsonl`) as inline SVG: RTO, RPO, duration and backup
//! size over time, targets drawn as dashed lines. No JavaScript, no network: the page is
//! evidence an auditor can open anywhere and archive as it is.

use serde_json::Value;

const W: f64 = 640.0;
const H: f64 = 200.0;
const PAD: f64 = 48.0;

fn esc(s: &str) -> String {
    super::xml_escaped(s)
}

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "s" if v >= 3600.0 => format!("{:.1} h", v / 3600.0),
        "s" if v >= 120.0 => format!("{:.1} min", v / 60.0),
        "s" => format!("{v:.1} s"),
        _ => super::human_bytes(v.max(0.0) as u64),
    }
}

/// One point of a chart: its label (the run's time), its value and the target that run was
/// held to (targets change between runs: each point is judged against its own).
pub type Point = (String, f64, Option<f64>);

/// One chart: `points` oldest first. The targets are drawn as a dashed line through each
/// run's own target, and a point is red when it exceeded its own run's target, never a
/// later run's.
pub fn chart(title: &str, unit: &str, points: &[Point]) -> String {
    let mut out = format!("<figure class=\"chart\"><figcaption>{}</figcaption>", esc(title));
    if points.is_empty() {
        out.push_str("<p>not measured in these runs</p></figure>");
        return out;
    }
    let target = points.iter().rev().find_map(|p| p.2);
    let max = points.iter().flat_map(|p| [Some(p.1), p.2]).flatten().fold(0.0_f64, f64::max).max(1e-9) * 1.1;
    let n = points.len();
    let x =
        |i: usize| if n == 1 { PAD + (W - 2.0 * PAD) / 2.0 } else { PAD + i as f64 * (W - 2.0 * PAD) / (n - 1) as f64 };
    let y = |v: f64| H - PAD / 2.0 - v / max * (H - PAD);
    // Scaled down, never cut, in a window narrower than the chart (its viewBox keeps the
    // drawing whole); 640 px wide where there is room.
    out.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" style=\"max-width:100%;height:auto\" role=\"img\" aria-label=\"{}\">",
        esc(title)
    ));
    out.push_str(&format!(
        "<line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#888\"/><line x1=\"{PAD}\" y1=\"{t}\" x2=\"{PAD}\" y2=\"{b}\" stroke=\"#888\"/>",
        b = H - PAD / 2.0,
        r = W - PAD,
        t = PAD / 2.0
    ));
    out.push_str(&format!(
        "<text x=\"4\" y=\"{}\" font-size=\"10\">{}</text><text x=\"4\" y=\"{}\" font-size=\"10\">0</text>",
        PAD / 2.0 + 4.0,
        esc(&fmt_value(max / 1.1, unit)),
        H - PAD / 2.0
    ));
    if let Some(t) = target {
        // A step line through each run's own target (flat when it never changed), from the
        // chart's left edge to its right one.
        let mut steps = Vec::new();
        let mut last: Option<f64> = None;
        for (i, p) in points.iter().enumerate() {
            let Some(pt) = p.2 else { continue };
            let left = if steps.is_empty() { PAD } else { x(i) };
            if let Some(prev) = last {
                steps.push(format!("{left:.1},{:.1}", y(prev)));
            }
            steps.push(format!("{left:.1},{:.1}", y(pt)));
            last = Some(pt);
        }
        steps.push(format!("{:.1},{:.1}", W - PAD, y(t)));
        out.push_str(&format!(
            "<polyline class=\"target\" fill=\"none\" points=\"{}\" stroke=\"#c00\" stroke-dasharray=\"6 4\"/><text x=\"{r}\" y=\"{ty:.1}\" font-size=\"10\" text-anchor=\"end\" fill=\"#c00\">target {}</text>",
            steps.join(" "),
            esc(&fmt_value(t, unit)),
            r = W - PAD,
            ty = y(t) - 3.0
        ));
    }
    let pts: Vec<String> = points.iter().enumerate().map(|(i, p)| format!("{:.1},{:.1}", x(i), y(p.1))).collect();
    out.push_str(&format!("<polyline fill=\"none\" stroke=\"#036\" stroke-width=\"2\" points=\"{}\"/>", pts.join(" ")));
    for (i, (label, v, own)) in points.iter().enumerate() {
        let over = own.is_some_and(|t| *v > t);
        let against = own.map(|t| format!(" (target {})", fmt_value(t, unit))).unwrap_or_default();
        out.push_str(&format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"><title>{}: {}{}</title></circle>",
            x(i),
            y(*v),
            if over { "#c00" } else { "#036" },
            esc(label),
            esc(&fmt_value(*v, unit)),
            esc(&against)
        ));
    }
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        out.push_str(&format!(
            "<text x=\"{PAD}\" y=\"{H}\" font-size=\"10\">{}</text><text x=\"{}\" y=\"{H}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            esc(&first.0),
            W - PAD,
            esc(&last.0)
        ));
    }
    out.push_str("</svg></figure>");
    out
}

/// The charts of the last `last` runs (of `runbook` when given), as an HTML section.
pub fn section(history: &str, runbook: Option<&str>, last: usize) -> String {
    let mut lines: Vec<Value> = history
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| runbook.is_none_or(|r| v["runbook"] == r))
        .collect();
    lines.sort_by_key(|v| v["finished_at"].as_str().unwrap_or_default().to_string());
    let start = lines.len().saturating_sub(last);
    let lines = &lines[start..];
    // Each run's value with the target that run was held to.
    let series = |key: &str, target: Option<&str>| -> Vec<Point> {
        lines
            .iter()
            .filter_map(|v| {
                let own = target.and_then(|t| v[t].as_f64());
                v[key].as_f64().map(|x| (v["finished_at"].as_str().unwrap_or("").chars().take(16).collect(), x, own))
            })
            .collect()
    };
    let mut out = format!(
        "<section class=\"history\"><h2>History: the last {} run(s){}</h2>",
        lines.len(),
        runbook.map(|r| format!(" of {}", esc(r))).unwrap_or_default()
    );
    out.push_str(&chart("RTO (recovery time)", "s", &series("rto_s", Some("rto_target_s"))));
    out.push_str(&chart("RPO (data that would be lost)", "s", &series("rpo_s", Some("rpo_target_s"))));
    out.push_str(&chart("Run duration", "s", &series("duration_s", None)));
    out.push_str(&chart("Backup size", "bytes", &series("backup_size_bytes", None)));
    out.push_str("</section>");
    out
}

/// A page of its own with the charts (`pgdrill report DIR --html OUT`).
pub fn page(history: &str, runbook: Option<&str>, last: usize) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>pgdrill history</title><style>body{{font-family:sans-serif;margin:2em}}figure{{margin:1em 0}}</style></head><body><h1>pgdrill history</h1>{}</body></html>\n",
        section(history, runbook, last)
    )
}
