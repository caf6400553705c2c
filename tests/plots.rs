//! The plots and the HTML report, opened and read back: SVG text and shapes (the classes named,
//! each count in its cell of the confusion matrix), PNG sizes and pixels (the cells' shades, text
//! drawn with the compiled-in font), the report's links, thumbnails and sections; on made-up
//! figures, on a recognizer trained on the shipped images, and through `graft train/eval --plots`
//! and `graft report`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use graft::metrics::{EpochRecord, Metrics};
use graft::plots::{write_charts, Chart, Format};
use graft::report::ReportOptions;
use graft::task::{self, Classifier, CreateOptions, Silent};

/// One `<text>` element of an SVG: its anchor point, whether it is rotated, and its content.
#[derive(Debug)]
struct SvgText {
    x: f64,
    y: f64,
    rotated: bool,
    text: String,
}

/// One `<rect>` of an SVG with its fill colour (`None` for an outline).
#[derive(Debug)]
struct SvgRect {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    fill: Option<(u8, u8, u8)>,
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')?;
    Some(tag[start..start + end].to_string())
}

fn num(tag: &str, name: &str) -> f64 {
    attr(tag, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {name} in {tag}"))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn svg_texts(svg: &str) -> Vec<SvgText> {
    svg.split("<text")
        .skip(1)
        .map(|part| {
            let (tag, rest) = part.split_once('>').expect("a closed <text> tag");
            let content = rest.split("</text>").next().unwrap_or_default();
            SvgText {
                x: num(tag, "x"),
                y: num(tag, "y"),
                rotated: attr(tag, "transform").is_some(),
                text: unescape(content.trim()),
            }
        })
        .collect()
}

fn hex(colour: &str) -> Option<(u8, u8, u8)> {
    let c = colour.strip_prefix('#')?;
    let byte = |i: usize| u8::from_str_radix(&c[i..i + 2], 16).ok();
    Some((byte(0)?, byte(2)?, byte(4)?))
}

fn svg_rects(svg: &str) -> Vec<SvgRect> {
    svg.split("<rect")
        .skip(1)
        .map(|part| {
            let tag = part.split('>').next().unwrap_or_default();
            SvgRect {
                x: num(tag, "x"),
                y: num(tag, "y"),
                w: num(tag, "width"),
                h: num(tag, "height"),
                fill: attr(tag, "fill")
                    .filter(|f| f != "none")
                    .and_then(|f| hex(&f)),
            }
        })
        .collect()
}

fn svg_size(svg: &str) -> (u32, u32) {
    let tag = svg.split("<svg").nth(1).unwrap().split('>').next().unwrap();
    (num(tag, "width") as u32, num(tag, "height") as u32)
}

/// Reads the confusion matrix back from its SVG: the row names (unrotated, left of the grid) and
/// column names (rotated, below it) in order of position, and the count drawn where each row
/// meets each column.
fn read_confusion(svg: &str, classes: &[&str]) -> Vec<Vec<usize>> {
    let texts = svg_texts(svg);
    let find = |name: &str, rotated: bool| -> &SvgText {
        texts
            .iter()
            .find(|t| t.text == name && t.rotated == rotated)
            .unwrap_or_else(|| {
                panic!(
                    "no {} label {name:?}",
                    if rotated { "column" } else { "row" }
                )
            })
    };
    let rows: Vec<f64> = classes.iter().map(|c| find(c, false).y).collect();
    let cols: Vec<f64> = classes.iter().map(|c| find(c, true).x).collect();
    assert!(rows.windows(2).all(|w| w[0] < w[1]), "rows out of order");
    assert!(cols.windows(2).all(|w| w[0] < w[1]), "columns out of order");
    rows.iter()
        .map(|&y| {
            cols.iter()
                .map(|&x| {
                    let count = texts
                        .iter()
                        .find(|t| (t.x - x).abs() < 1.0 && (t.y - y).abs() < 1.0 && !t.rotated)
                        .unwrap_or_else(|| panic!("no count at ({x}, {y})"));
                    count.text.parse().expect("a count")
                })
                .collect()
        })
        .collect()
}

/// Checks the PNG against the SVG of the same confusion chart: same size; at each count, the
/// pixels of its cell (away from the digits) have the cell's fill, and the digits are drawn.
fn check_confusion_png(png: &[u8], svg: &str) {
    let image = image::load_from_memory(png).expect("a PNG").to_rgb8();
    assert_eq!(image.dimensions(), svg_size(svg));
    let cells: Vec<SvgRect> = svg_rects(svg)
        .into_iter()
        .filter(|r| r.fill.is_some() && (r.w - r.h).abs() < 0.5 && r.w >= 20.0)
        .collect();
    assert!(!cells.is_empty());
    let mut checked = 0;
    for t in svg_texts(svg)
        .iter()
        .filter(|t| t.text.parse::<usize>().is_ok())
    {
        let Some(cell) = cells
            .iter()
            .find(|r| t.x > r.x && t.x < r.x + r.w && t.y > r.y && t.y < r.y + r.h)
        else {
            continue;
        };
        let fill = cell.fill.unwrap();
        let corner = image.get_pixel(cell.x as u32 + 4, cell.y as u32 + 4).0;
        for (got, want) in corner.iter().zip([fill.0, fill.1, fill.2]) {
            assert!(
                got.abs_diff(want) <= 2,
                "cell at ({}, {}): {corner:?} vs {fill:?}",
                cell.x,
                cell.y
            );
        }
        // Some pixel around the count's centre differs from the fill: the digits are drawn.
        let (cx, cy) = (t.x as i64, t.y as i64);
        let inked = (-6..=6)
            .flat_map(|dx| (-6..=6).map(move |dy| (cx + dx, cy + dy)))
            .filter(|&(x, y)| {
                let p = image.get_pixel(x as u32, y as u32).0;
                p.iter()
                    .zip([fill.0, fill.1, fill.2])
                    .any(|(a, b)| a.abs_diff(b) > 60)
            })
            .count();
        assert!(inked >= 4, "no digits drawn for {:?}", t.text);
        checked += 1;
    }
    assert_eq!(checked, cells.len(), "one count per cell");
}

fn history(epochs: usize, best: usize) -> Vec<EpochRecord> {
    (1..=epochs)
        .map(|e| {
            let d = (e as f32 - best as f32).abs();
            EpochRecord {
                epoch: e,
                train_loss: 2.0 / e as f32,
                train_acc: 1.0 - 0.5 / e as f32,
                val_loss: Some(0.5 + 0.05 * d),
                val_acc: Some(0.9 - 0.01 * d),
            }
        })
        .collect()
}

#[test]
fn charts_show_the_classes_and_counts_of_made_up_figures() {
    let classes: Vec<String> = ["cat", "dog", "a <very> long & odd name", "émeu"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    // confusion[true][predicted]
    let want = [[5, 1, 0, 0], [2, 7, 0, 1], [0, 0, 3, 0], [0, 4, 0, 12]];
    let (mut truth, mut predicted) = (Vec::new(), Vec::new());
    for (t, row) in want.iter().enumerate() {
        for (p, &n) in row.iter().enumerate() {
            truth.extend(std::iter::repeat_n(t, n));
            predicted.extend(std::iter::repeat_n(p, n));
        }
    }
    let metrics = Metrics::compute(&truth, &predicted, &classes).unwrap();
    let shown = ["cat", "dog", "a <very> long…", "émeu"];

    let confusion = Chart::Confusion(&metrics);
    let svg = confusion.svg().unwrap();
    assert_eq!(svg_size(&svg), confusion.size());
    let read = read_confusion(&svg, &shown);
    assert_eq!(read, want.iter().map(|r| r.to_vec()).collect::<Vec<_>>());
    check_confusion_png(&confusion.png().unwrap(), &svg);

    let bars = Chart::ClassBars(&metrics).svg().unwrap();
    let texts: Vec<String> = svg_texts(&bars).into_iter().map(|t| t.text).collect();
    for (name, support) in shown.iter().zip([6, 10, 3, 16]) {
        assert!(texts.contains(&format!("{name} ({support})")), "{texts:?}");
    }
    // dog: precision 7/12 = 58%, recall 7/10 = 70%; émeu: 12/13 = 92%, 12/16 = 75%.
    for value in ["58%", "70%", "92%", "75%", "100%"] {
        assert!(
            texts.iter().any(|t| t == value),
            "{value} missing: {texts:?}"
        );
    }

    let records = history(12, 5);
    let curves = Chart::Curves {
        history: &records,
        best_epoch: Some(5),
    };
    let svg = curves.svg().unwrap();
    let texts: Vec<String> = svg_texts(&svg).into_iter().map(|t| t.text).collect();
    for label in [
        "loss",
        "accuracy (%)",
        "training",
        "validation",
        "best epoch 5",
        "epoch",
    ] {
        assert!(
            texts.iter().any(|t| t == label),
            "{label} missing: {texts:?}"
        );
    }
    let png = image::load_from_memory(&curves.png().unwrap()).unwrap();
    assert_eq!((png.width(), png.height()), curves.size());

    let empty: Vec<EpochRecord> = Vec::new();
    let nothing = Chart::Curves {
        history: &empty,
        best_epoch: None,
    };
    assert!(nothing.svg().unwrap_err().to_string().contains("no epochs"));
}

/// The circles the map draws around mistakes (radius 11).
fn rings(svg: &str) -> usize {
    svg.split("<circle")
        .skip(1)
        .filter(|c| {
            c.split('>')
                .next()
                .is_some_and(|t| attr(t, "r").as_deref() == Some("11"))
        })
        .count()
}

#[test]
fn training_evaluation_and_report_on_the_shipped_images() {
    let shipped = common::shipped_recognizer();
    let base = shipped.classifier.base().clone();
    let data = graft::dataset::Dataset::from_folder(&shipped.data).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let no_cache = graft::cache::CacheOptions { no_cache: true };

    // Training with plots: the same run as the shipped recognizer's, plotted.
    let embedded = task::embed_folder(&base, &data, &no_cache, &Silent).unwrap();
    let train_dir = tmp.path().join("train-plots");
    let options = CreateOptions {
        cache: no_cache.clone(),
        plots: Some(train_dir.clone()),
        ..CreateOptions::default()
    };
    let created =
        task::create_from_embeddings(&base, &embedded.embeddings, &[], &options, &Silent).unwrap();
    let names = [
        "training-curves",
        "confusion-matrix",
        "per-class",
        "embedding-map",
    ];
    let expected: Vec<PathBuf> = names
        .iter()
        .flat_map(|n| ["svg", "png"].map(|e| train_dir.join(format!("{n}.{e}"))))
        .collect();
    assert_eq!(created.report.plots, expected);
    let training = created.recognizer.training().unwrap();
    let validation = training.validation.as_ref().unwrap();
    let labels: Vec<&str> = created
        .recognizer
        .labels()
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(labels.len(), 7);
    let read = |name: &str| std::fs::read_to_string(train_dir.join(name)).unwrap();
    let svg = read("confusion-matrix.svg");
    assert_eq!(read_confusion(&svg, &labels), validation.confusion);
    check_confusion_png(
        &std::fs::read(train_dir.join("confusion-matrix.png")).unwrap(),
        &svg,
    );
    let curves = read("training-curves.svg");
    let best = training.report.best_epoch.unwrap();
    let curve_texts: Vec<String> = svg_texts(&curves).into_iter().map(|t| t.text).collect();
    assert!(
        curve_texts.contains(&format!("best epoch {best}")),
        "no best epoch {best}: {curve_texts:?}"
    );
    let map = read("embedding-map.svg");
    let map_texts: Vec<String> = svg_texts(&map).into_iter().map(|t| t.text).collect();
    for label in &labels {
        assert!(
            map_texts.iter().any(|t| t == label),
            "{label} not on the map"
        );
    }
    assert!(map_texts.iter().any(|t| t.starts_with("PC1 (")));
    let wrong = created
        .report
        .validation
        .iter()
        .filter(|a| a.label != a.predicted)
        .count();
    assert_eq!(rings(&map), wrong, "one ring per validation mistake");
    for (name, png) in names
        .iter()
        .map(|n| (n, train_dir.join(format!("{n}.png"))))
    {
        let svg = read(&format!("{name}.svg"));
        let image = image::open(&png).unwrap();
        assert_eq!((image.width(), image.height()), svg_size(&svg), "{name}");
        // Not blank: text and marks in more than a few pixels.
        let dark = image.to_luma8().pixels().filter(|p| p.0[0] < 128).count();
        assert!(dark > 500, "{name}: only {dark} dark pixels");
    }

    // Evaluation on the whole folder, its plots.
    let classifier = &shipped.classifier;
    let evaluation = classifier
        .evaluate(&data, None, &no_cache, &Silent)
        .unwrap();
    assert_eq!(evaluation.answers.len(), data.examples.len());
    let eval_dir = tmp.path().join("eval-plots");
    let charts = evaluation.charts(classifier.recognizer().training());
    let written = write_charts(&eval_dir, &charts, &[Format::Svg]).unwrap();
    assert_eq!(written.len(), 4);
    let svg = std::fs::read_to_string(eval_dir.join("confusion-matrix.svg")).unwrap();
    assert_eq!(read_confusion(&svg, &labels), evaluation.metrics.confusion);
    let map = std::fs::read_to_string(eval_dir.join("embedding-map.svg")).unwrap();
    let mistakes = evaluation
        .answers
        .iter()
        .filter(|a| a.label != a.predicted())
        .count();
    assert_eq!(rings(&map), mistakes);

    // The report.
    let saved = tmp.path().join("shipped.safetensors");
    classifier.recognizer().save(&saved).unwrap();
    let loaded = Classifier::load(&saved, &Default::default(), &Silent).unwrap();
    let out = tmp.path().join("report.html");
    let report = task::write_report(
        &loaded,
        &data,
        &out,
        &ReportOptions::default(),
        &no_cache,
        &Silent,
    )
    .unwrap();
    let html = std::fs::read_to_string(&out).unwrap();
    assert_eq!(report.bytes, html.len());
    assert_eq!(report.metrics.confusion, evaluation.metrics.confusion);
    check_report(&html, &report.metrics, data.examples.len(), 96);
    // The data doctor's findings on the shipped images: the three stoplights are near-duplicates.
    let doctor = &html[html.find("<section id=\"data-doctor\">").unwrap()..];
    let doctor = &doctor[..doctor.find("</section>").unwrap()];
    assert!(
        doctor.contains("near-duplicate pair(s) within a class")
            && doctor.contains("town__roadsigns__stoplight_03_green.png"),
        "{doctor}"
    );
}

/// Asserts what a report must hold: each class named, each non-empty cell of the confusion table
/// linking to a section with as many examples, thumbnails within `side` pixels, no resource
/// fetched from elsewhere, and the data doctor's place.
fn check_report(html: &str, metrics: &Metrics, examples: usize, side: u32) {
    assert!(html.starts_with("<!DOCTYPE html>"));
    for c in &metrics.per_class {
        assert!(
            html.contains(&format!("<td>{}</td>", c.label)),
            "{} not in the table",
            c.label
        );
    }
    let wrong: usize = examples - metrics.per_class.iter().map(|c| c.correct).sum::<usize>();
    assert!(
        html.contains(&format!("Misclassified ({wrong} of {examples})")),
        "mistake count"
    );
    for (t, row) in metrics.confusion.iter().enumerate() {
        for (p, &count) in row.iter().enumerate() {
            let link = format!("<a href=\"#cell-{t}-{p}\">{count}</a>");
            let id = format!("id=\"cell-{t}-{p}\"");
            if count == 0 {
                assert!(!html.contains(&link) && !html.contains(&id));
                continue;
            }
            assert!(html.contains(&link), "no link {link}");
            let section = html.split(&id).nth(1).expect("the cell's section");
            let section = section.split("</div>\n</div>").next().unwrap();
            assert!(section.contains(&format!("({count})</h3>")));
            let cards = section.matches("<div class=\"card\"").count()
                + section.matches("<div class=\"card wrong\"").count();
            assert_eq!(
                cards,
                count.min(ReportOptions::default().per_cell),
                "cell {t},{p}"
            );
            // Each card lists the top 3 answers.
            assert_eq!(section.matches("<li class=").count(), 3 * cards);
        }
    }
    let mut thumbs = 0;
    for part in html.split("src=\"data:image/jpeg;base64,").skip(1) {
        let encoded = part.split('"').next().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        let thumb = image::load_from_memory(&bytes).unwrap();
        assert!(thumb.width() <= side && thumb.height() <= side);
        assert!(thumb.width() == side || thumb.height() == side);
        thumbs += 1;
    }
    assert!(
        thumbs >= examples,
        "{thumbs} thumbnails for {examples} examples"
    );
    // Self-contained: nothing is loaded from elsewhere (the SVG namespace is only a name).
    for outside in [
        "src=\"http",
        "href=\"http",
        "<link",
        "<script",
        "url(",
        "@import",
    ] {
        assert!(!html.contains(outside), "the report loads {outside}");
    }
    for id in [
        "metrics",
        "plots",
        "mistakes",
        "least-confident",
        "cells",
        "data-doctor",
    ] {
        assert!(
            html.contains(&format!("<section id=\"{id}\">")),
            "no section {id}"
        );
    }
    for plot in ["confusion-matrix", "per-class", "embedding-map"] {
        assert!(
            html.contains(&format!("<figure id=\"plot-{plot}\"><svg")),
            "no {plot}"
        );
    }
}

fn graft(cache: &Path, args: &[&str]) -> (i32, String, String) {
    common::run_graft(cache, args)
}

fn json(run: (i32, String, String)) -> serde_json::Value {
    let (code, stdout, stderr) = run;
    assert_eq!(code, 0, "graft failed:\n{stdout}\n{stderr}");
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {last}"))
}

#[test]
fn train_and_eval_plots_and_the_report_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let data = tmp.path().join("data");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/tuxpaint-dev");
    for class in ["fish", "planet", "roadsign"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(shipped.join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        std::fs::create_dir_all(data.join(class)).unwrap();
        for f in files.iter().take(6) {
            std::fs::copy(f, data.join(class).join(f.file_name().unwrap())).unwrap();
        }
    }
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let rec = tmp.path().join("rec.safetensors");
    let train_plots = tmp.path().join("train-plots");
    let trained = json(graft(
        &cache,
        &[
            "train",
            "--data",
            &s(&data),
            "--epochs",
            "30",
            "--plots",
            &s(&train_plots),
            "-o",
            &s(&rec),
            "--json",
        ],
    ));
    let plots = trained["report"]["plots"].as_array().unwrap();
    assert_eq!(plots.len(), 8);
    for p in plots {
        assert!(Path::new(p.as_str().unwrap()).is_file());
    }

    let eval_plots = tmp.path().join("eval-plots");
    let evaluated = json(graft(
        &cache,
        &[
            "eval",
            &s(&rec),
            "--data",
            &s(&data),
            "--plots",
            &s(&eval_plots),
            "--json",
        ],
    ));
    assert_eq!(evaluated["plots"].as_array().unwrap().len(), 8);
    let confusion: Vec<Vec<usize>> =
        serde_json::from_value(evaluated["metrics"]["confusion"].clone()).unwrap();
    let svg = std::fs::read_to_string(eval_plots.join("confusion-matrix.svg")).unwrap();
    assert_eq!(
        read_confusion(&svg, &["fish", "planet", "roadsign"]),
        confusion
    );

    let out = tmp.path().join("report.html");
    let reported = json(graft(
        &cache,
        &[
            "report",
            &s(&rec),
            "--data",
            &s(&data),
            "-o",
            &s(&out),
            "--thumbnail",
            "64",
            "--json",
        ],
    ));
    assert_eq!(reported["examples"], 18);
    let metrics: Metrics = serde_json::from_value(reported["metrics"].clone()).unwrap();
    assert_eq!(metrics.confusion, confusion);
    let html = std::fs::read_to_string(&out).unwrap();
    check_report(&html, &metrics, 18, 64);
    let thumbs: HashMap<&str, usize> = html
        .split("<div class=\"file\" title=\"")
        .skip(1)
        .filter_map(|p| p.split('"').next())
        .fold(HashMap::new(), |mut m, f| {
            *m.entry(f).or_default() += 1;
            m
        });
    // Every example appears in its cell (and some again among the least confident).
    assert_eq!(thumbs.len(), 18);

    let (code, _, stderr) = graft(
        &cache,
        &["report", &s(&rec), "--data", &s(&data), "--thumbnail", "0"],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("thumbnail side 0"), "{stderr}");
    assert!(!stderr.contains("panicked"));
}
