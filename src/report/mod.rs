//! The HTML report of a recognizer on a labelled folder: one self-contained file (no network:
//! styles inline, charts as inline SVG, thumbnails as `data:` URIs) with the metrics, the
//! [`plots`](crate::plots), the misclassified and the least confident examples with their top-3
//! answers, and the confusion matrix as a table whose cells link to their examples.
//!
//! [`render`] takes the figures as plain data ([`Report`]); `graft::task::write_report` gathers
//! them for a recognizer and a folder. The section `id="data-doctor"` is kept for the data doctor's
//! findings ([`Report::doctor`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;

use crate::limits::{self, FileKind};
use crate::metrics::Metrics;
use crate::plots::Chart;
use crate::{Error, Result};

/// How many answers each example shows.
pub const TOP_K: usize = 3;

/// What the report shows, with its defaults.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ReportOptions {
    /// Longest side in pixels of the examples' thumbnails (JPEG, embedded in the page).
    /// Default 96.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 96))]
    pub thumbnail: u32,
    /// How many of the least confident examples (lowest top-1 probability, right or wrong) the
    /// report shows. Default 24.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 24))]
    pub least_confident: usize,
    /// Most examples shown per cell of the confusion matrix (least confident first; the rest
    /// are counted). Default 48.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 48))]
    pub per_cell: usize,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            thumbnail: 96,
            least_confident: 24,
            per_cell: 48,
        }
    }
}

impl ReportOptions {
    /// Refuses a thumbnail side of 0 or over 512 pixels.
    pub fn validate(&self) -> Result<()> {
        if !(1..=512).contains(&self.thumbnail) {
            return Err(Error::Invalid(format!(
                "thumbnail side {} is not in 1..=512 pixels",
                self.thumbnail
            )));
        }
        Ok(())
    }
}

/// How the recognizer answered one example of the folder.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExampleAnswer {
    pub file: PathBuf,
    /// Its true class (an index into the recognizer's labels).
    pub label: usize,
    /// The best classes with their probabilities, most probable first (at least one).
    pub top: Vec<(usize, f32)>,
}

impl ExampleAnswer {
    /// The class answered (the most probable one).
    pub fn predicted(&self) -> usize {
        self.top.first().map_or(usize::MAX, |t| t.0)
    }

    /// The answered class's probability.
    pub fn confidence(&self) -> f32 {
        self.top.first().map_or(0.0, |t| t.1)
    }
}

/// The figures one report shows.
#[derive(Clone, Debug)]
pub struct Report<'a> {
    /// The page's title (e.g. the recognizer's file name).
    pub title: String,
    /// Lines of facts shown under the title, as (name, value): the recognizer, its base, the
    /// folder, the training run.
    pub facts: Vec<(String, String)>,
    /// The metrics on the folder; their classes are the examples' labels.
    pub metrics: &'a Metrics,
    /// The charts drawn inline (SVG).
    pub charts: Vec<Chart<'a>>,
    /// Every example's answer.
    pub examples: &'a [ExampleAnswer],
    /// The data doctor's section as an HTML fragment; `None` leaves its place saying it was not
    /// run.
    pub doctor: Option<String>,
}

/// The report as one HTML document.
pub fn render(report: &Report, options: &ReportOptions) -> Result<String> {
    options.validate()?;
    let labels: Vec<&str> = report
        .metrics
        .per_class
        .iter()
        .map(|c| c.label.as_str())
        .collect();
    let n = labels.len();
    if let Some(bad) = report
        .examples
        .iter()
        .find(|e| e.label >= n || e.predicted() >= n)
    {
        return Err(Error::Invalid(format!(
            "{}: an answer of a class the report's {n} classes do not have",
            bad.file.display()
        )));
    }
    let mut thumbs = Thumbnails::new(options.thumbnail);
    let mut page = String::with_capacity(1 << 16);
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(page, "<title>{}</title>", escape(&report.title));
    page.push_str(STYLE);
    page.push_str("</head>\n<body>\n");
    let _ = writeln!(page, "<h1>{}</h1>", escape(&report.title));
    page.push_str("<table class=\"facts\">\n");
    for (name, value) in &report.facts {
        let _ = writeln!(
            page,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(name),
            escape(value)
        );
    }
    page.push_str("</table>\n<nav><a href=\"#metrics\">metrics</a> · <a href=\"#plots\">plots</a> · <a href=\"#mistakes\">misclassified</a> · <a href=\"#least-confident\">least confident</a> · <a href=\"#cells\">examples by cell</a> · <a href=\"#data-doctor\">data doctor</a></nav>\n");
    metrics_section(&mut page, report.metrics);
    page.push_str("<section id=\"plots\">\n<h2>Plots</h2>\n");
    for chart in &report.charts {
        let svg = chart.svg()?;
        let svg = svg.trim_start_matches(|c| c != '<');
        let svg = match svg.starts_with("<?xml") {
            true => svg.split_once("?>").map_or(svg, |(_, rest)| rest),
            false => svg,
        };
        let _ = writeln!(
            page,
            "<figure id=\"plot-{}\">{}</figure>",
            chart.name(),
            svg.trim()
        );
    }
    page.push_str("</section>\n");

    let mut mistakes: Vec<&ExampleAnswer> = report
        .examples
        .iter()
        .filter(|e| e.label != e.predicted())
        .collect();
    mistakes.sort_by(|a, b| b.confidence().total_cmp(&a.confidence()));
    let _ = writeln!(
        page,
        "<section id=\"mistakes\">\n<h2>Misclassified ({} of {})</h2>",
        mistakes.len(),
        report.examples.len()
    );
    if mistakes.is_empty() {
        page.push_str("<p>None: every example was answered right.</p>\n");
    } else {
        page.push_str("<p>Most confident mistakes first.</p>\n");
    }
    cards(&mut page, &mistakes, &labels, &mut thumbs);
    page.push_str("</section>\n");

    let mut doubtful: Vec<&ExampleAnswer> = report.examples.iter().collect();
    doubtful.sort_by(|a, b| a.confidence().total_cmp(&b.confidence()));
    doubtful.truncate(options.least_confident);
    let _ = writeln!(
        page,
        "<section id=\"least-confident\">\n<h2>Least confident ({})</h2>\n<p>The examples whose answer had the lowest probability, right or wrong.</p>",
        doubtful.len()
    );
    cards(&mut page, &doubtful, &labels, &mut thumbs);
    page.push_str("</section>\n");

    page.push_str("<section id=\"cells\">\n<h2>Examples by cell of the confusion matrix</h2>\n");
    for (t, row) in report.metrics.confusion.iter().enumerate() {
        for (p, &count) in row.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let mut cell: Vec<&ExampleAnswer> = report
                .examples
                .iter()
                .filter(|e| e.label == t && e.predicted() == p)
                .collect();
            cell.sort_by(|a, b| a.confidence().total_cmp(&b.confidence()));
            let shown = cell.len().min(options.per_cell);
            let _ = writeln!(
                page,
                "<div class=\"cell\" id=\"cell-{t}-{p}\">\n<h3>true {} → answered {} ({count})</h3>",
                escape(labels[t]),
                escape(labels[p])
            );
            cards(&mut page, &cell[..shown], &labels, &mut thumbs);
            if cell.len() > shown {
                let _ = writeln!(page, "<p>… and {} more.</p>", cell.len() - shown);
            }
            page.push_str("</div>\n");
        }
    }
    page.push_str("</section>\n");

    page.push_str("<section id=\"data-doctor\">\n<h2>Data doctor</h2>\n");
    match &report.doctor {
        Some(fragment) => page.push_str(fragment),
        None => page.push_str(
            "<!-- data-doctor: the place for the data doctor's findings (duplicates, likely mislabels, outliers, small classes) -->\n<p>Not run for this report.</p>\n",
        ),
    }
    page.push_str("</section>\n</body>\n</html>\n");
    Ok(page)
}

const STYLE: &str = "<style>
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;padding:0 1em;color:#222}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse}td,th{padding:.2em .6em;text-align:right}
.facts th{text-align:left;color:#555;font-weight:normal}.facts td{text-align:left}
table.figures td:first-child,table.figures th:first-child{text-align:left}
table.figures tr:nth-child(even){background:#f6f6f6}
table.confusion td{min-width:2.4em;text-align:center;border:1px solid #fff}
table.confusion td a{color:inherit;text-decoration:none;display:block}
table.confusion th.col{writing-mode:vertical-rl;transform:rotate(180deg);text-align:left}
nav{margin:.8em 0}figure{margin:1em 0;overflow-x:auto}
.cards{display:flex;flex-wrap:wrap;gap:.6em}
.card{width:150px;border:1px solid #ddd;border-radius:4px;padding:.4em;font-size:12px}
.card.wrong{border-color:#d62728}.card img{display:block;margin:0 auto .3em}
.card .file{word-break:break-all;color:#555}.card ol{margin:.2em 0 0 1.2em;padding:0}
.card .right{color:#2ca02c}.card .bad{color:#d62728}.sound{font-size:32px;text-align:center}
</style>
";

/// The figures table, the means and the confusion matrix as a table of links.
fn metrics_section(page: &mut String, m: &Metrics) {
    let total: usize = m.per_class.iter().map(|c| c.support).sum();
    let correct: usize = m.per_class.iter().map(|c| c.correct).sum();
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));
    let _ = writeln!(
        page,
        "<section id=\"metrics\">\n<h2>Metrics</h2>\n<p class=\"accuracy\">accuracy <b>{:.1}%</b> ({correct} of {total})</p>",
        m.accuracy * 100.0
    );
    page.push_str("<table class=\"figures\">\n<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th><th>answered</th></tr>\n");
    for c in &m.per_class {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&c.label),
            pct(c.precision),
            pct(c.accuracy),
            pct(c.f1),
            c.support,
            c.predicted
        );
    }
    for (name, means) in [
        ("macro mean", &m.macro_mean),
        ("weighted mean", &m.weighted),
    ] {
        let _ = writeln!(
            page,
            "<tr><td><i>{name}</i></td><td>{}</td><td>{}</td><td>{}</td><td>{total}</td><td></td></tr>",
            pct(means.precision),
            pct(means.recall),
            pct(means.f1)
        );
    }
    page.push_str("</table>\n<h3>Confusion matrix</h3>\n<p>Rows: true class; columns: answered class. Each count links to its examples.</p>\n<table class=\"confusion\">\n<tr><th>true \\ answered</th>");
    for c in &m.per_class {
        let _ = write!(page, "<th class=\"col\">{}</th>", escape(&c.label));
    }
    page.push_str("</tr>\n");
    for (t, row) in m.confusion.iter().enumerate() {
        let support: usize = row.iter().sum();
        let name = m.per_class.get(t).map_or("?", |c| c.label.as_str());
        let _ = write!(page, "<tr><th>{}</th>", escape(name));
        for (p, &count) in row.iter().enumerate() {
            let share = match support {
                0 => 0.0,
                s => count as f64 / s as f64,
            };
            let (r, g, b) = shade(share);
            let ink = if share > 0.5 { "#fff" } else { "#000" };
            let style = format!("background:rgb({r},{g},{b});color:{ink}");
            match count {
                0 => {
                    let _ = write!(page, "<td style=\"{style}\">0</td>");
                }
                _ => {
                    let _ = write!(
                        page,
                        "<td style=\"{style}\"><a href=\"#cell-{t}-{p}\">{count}</a></td>"
                    );
                }
            }
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table>\n</section>\n");
}

/// The shade of a cell with `share` of its row, as the confusion chart's (white to dark blue).
fn shade(share: f64) -> (u8, u8, u8) {
    let s = share.clamp(0.0, 1.0);
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * s).round() as u8;
    (mix(247, 8), mix(251, 48), mix(255, 107))
}

/// One card per example: its thumbnail (or a sound sign), file name, true class and top answers.
fn cards(page: &mut String, examples: &[&ExampleAnswer], labels: &[&str], thumbs: &mut Thumbnails) {
    if examples.is_empty() {
        return;
    }
    page.push_str("<div class=\"cards\">\n");
    for e in examples {
        let wrong = e.label != e.predicted();
        let _ = write!(
            page,
            "<div class=\"card{}\">",
            if wrong { " wrong" } else { "" }
        );
        match thumbs.get(&e.file) {
            Some(uri) => {
                let _ = write!(page, "<img src=\"{uri}\" alt=\"\">");
            }
            None if is_sound(&e.file) => page.push_str("<div class=\"sound\">♪</div>"),
            None => page.push_str("<div class=\"sound\">?</div>"),
        }
        let name = e.file.file_name().map_or_else(
            || e.file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let _ = write!(
            page,
            "<div class=\"file\" title=\"{}\">{}</div><div>true: <b>{}</b></div><ol>",
            escape(&e.file.display().to_string()),
            escape(&name),
            escape(labels.get(e.label).copied().unwrap_or("?"))
        );
        for &(class, p) in e.top.iter().take(TOP_K) {
            let kind = match class == e.label {
                true => "right",
                false => "bad",
            };
            let _ = write!(
                page,
                "<li class=\"{kind}\">{} {:.2}</li>",
                escape(labels.get(class).copied().unwrap_or("?")),
                p
            );
        }
        page.push_str("</ol></div>\n");
    }
    page.push_str("</div>\n");
}

/// Whether `file` is named as a WAV recording (shown by name, not as a picture).
fn is_sound(file: &Path) -> bool {
    file.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("wav"))
}

/// Thumbnails made once per file: a JPEG `data:` URI, or `None` for a file that is not a
/// readable image (sounds are shown by name).
struct Thumbnails {
    side: u32,
    made: HashMap<PathBuf, Option<String>>,
}

impl Thumbnails {
    fn new(side: u32) -> Thumbnails {
        Thumbnails {
            side,
            made: HashMap::new(),
        }
    }

    fn get(&mut self, file: &Path) -> Option<&str> {
        let side = self.side;
        self.made
            .entry(file.to_path_buf())
            .or_insert_with(|| thumbnail(file, side).ok())
            .as_deref()
    }
}

/// The image at `path` shrunk to fit `side` x `side` pixels, as a JPEG `data:` URI.
pub fn thumbnail(path: &Path, side: u32) -> Result<String> {
    let bytes = limits::read(path, FileKind::Image)?;
    let image = crate::input::image::decode_image(&bytes, path)?;
    let small = image.thumbnail(side, side).to_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut Cursor::new(&mut jpeg), 82)
        .encode_image(&small)
        .map_err(|e| Error::Input {
            path: path.to_path_buf(),
            msg: format!("making its thumbnail: {e}"),
        })?;
    Ok(format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&jpeg)
    ))
}

/// `text` with `&`, `<`, `>`, `"` and `'` escaped for HTML text and attributes.
/// The data doctor's findings as the report's section: a list per kind found.
pub fn doctor_html(diagnosis: &crate::doctor::Diagnosis) -> String {
    let sections = diagnosis.sections();
    if sections.is_empty() {
        return format!(
            "<p>No findings on {} examples: no duplicates, likely mislabels, outliers, small \
             classes or unreadable files.</p>\n",
            diagnosis.examples
        );
    }
    let mut html = String::new();
    for (title, lines) in sections {
        html.push_str(&format!("<h3>{}</h3>\n<ul>\n", escape(&title)));
        for line in lines {
            html.push_str(&format!("<li>{}</li>\n", escape(&line)));
        }
        html.push_str("</ul>\n");
    }
    html
}

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
