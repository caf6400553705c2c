//! Drawing each [`Chart`] with plotters, on its SVG backend or on an RGB buffer encoded as PNG.

use std::io::Cursor;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::font::{self, FAMILY};
use super::{Chart, EmbeddingMap};
use crate::metrics::{EpochRecord, Metrics};
use crate::{Error, Result};

type Drawn<E> = std::result::Result<(), DrawingAreaErrorKind<E>>;

/// Class names longer than this are cut with `…` on the charts.
const MAX_NAME: usize = 14;
/// Pixels allowed per character of a class name (13 px DejaVu Sans is narrower on average).
const CHAR_WIDTH: u32 = 8;
/// The text size of labels and counts, in pixels.
const LABEL: u32 = 13;
/// Ten distinguishable class colours (Tableau 10), reused past ten classes.
const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];
const TRAINING: RGBColor = RGBColor(31, 119, 180);
const VALIDATION: RGBColor = RGBColor(255, 127, 14);
const GRID: RGBColor = RGBColor(220, 220, 220);

/// The colour of class `c`.
pub(super) fn class_colour(c: usize) -> RGBColor {
    let (r, g, b) = PALETTE[c % PALETTE.len()];
    RGBColor(r, g, b)
}

/// `name` cut to [`MAX_NAME`] characters, ending in `…` when cut.
fn short(name: &str) -> String {
    match name.chars().count() <= MAX_NAME {
        true => name.to_string(),
        false => {
            let mut s: String = name.chars().take(MAX_NAME - 1).collect();
            s.push('…');
            s
        }
    }
}

/// Width in pixels kept for the longest of `names` (as cut by [`short`]).
fn names_width<'a>(names: impl Iterator<Item = &'a str>) -> u32 {
    let chars = names.map(|n| short(n).chars().count()).max().unwrap_or(0) as u32;
    chars.max(4) * CHAR_WIDTH + 12
}

/// Side of one confusion-matrix cell for `n` classes.
fn cell_side(n: usize) -> u32 {
    (560 / n.max(1) as u32).clamp(30, 72)
}

/// The confusion matrix's layout: the grid's left and top edges, and the cell side.
struct Grid {
    left: u32,
    top: u32,
    cell: u32,
}

impl Grid {
    fn of(m: &Metrics) -> Grid {
        let names = names_width(m.per_class.iter().map(|c| c.label.as_str()));
        Grid {
            left: 34 + names,
            top: 56,
            cell: cell_side(m.per_class.len()),
        }
    }
}

/// Rows of the per-class bars: height of one class's row, and the bars' width.
const BAR_ROW: u32 = 40;
const BAR_WIDTH: u32 = 440;

pub(super) fn size(chart: &Chart) -> (u32, u32) {
    match chart {
        Chart::Curves { .. } => (960, 380),
        Chart::Confusion(m) => {
            let g = Grid::of(m);
            let n = m.per_class.len() as u32;
            let names = names_width(m.per_class.iter().map(|c| c.label.as_str()));
            let width = (g.left + n * g.cell + 24).max(360);
            (width, g.top + n * g.cell + names + 40)
        }
        Chart::ClassBars(m) => {
            let names = names_width(m.per_class.iter().map(|c| c.label.as_str()));
            let n = m.per_class.len() as u32;
            (names + 70 + BAR_WIDTH + 70, 90 + n * BAR_ROW + 40)
        }
        Chart::Map(map) => {
            let names = names_width(map.classes.iter().map(String::as_str));
            (640 + names.max(110) + 48, 560)
        }
    }
}

pub(super) fn svg(chart: &Chart) -> Result<String> {
    font::ensure()?;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size(chart)).into_drawing_area();
        draw(&root, chart).map_err(|e| failed(chart, e))?;
        root.present().map_err(|e| failed(chart, e))?;
    }
    Ok(out)
}

pub(super) fn png(chart: &Chart) -> Result<Vec<u8>> {
    font::ensure()?;
    let (w, h) = size(chart);
    let mut pixels = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        draw(&root, chart).map_err(|e| failed(chart, e))?;
        root.present().map_err(|e| failed(chart, e))?;
    }
    let image = image::RgbImage::from_raw(w, h, pixels)
        .ok_or_else(|| Error::Internal(format!("{}: the pixel buffer is short", chart.name())))?;
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| Error::Internal(format!("{}: encoding the PNG: {e}", chart.name())))?;
    Ok(bytes)
}

fn failed(chart: &Chart, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("drawing the {} chart: {e}", chart.name()))
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, chart: &Chart) -> Drawn<DB::ErrorType> {
    root.fill(&WHITE)?;
    match chart {
        Chart::Curves {
            history,
            best_epoch,
        } => curves(root, history, *best_epoch),
        Chart::Confusion(m) => confusion(root, m),
        Chart::ClassBars(m) => class_bars(root, m),
        Chart::Map(map) => embedding_map(root, map),
    }
}

/// A text style of `size` pixels in `colour`, anchored at `h`, `v`.
fn text(size: u32, colour: RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    TextStyle {
        font: (FAMILY, size).into_font(),
        color: colour.to_backend_color(),
        pos: Pos::new(h, v),
    }
}

fn px(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Two panels: loss, then accuracy in percent; training and validation lines, the best epoch as
/// a dashed line.
fn curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    history: &[EpochRecord],
    best: Option<usize>,
) -> Drawn<DB::ErrorType> {
    let (w, _) = root.dim_in_pixel();
    let (left, right) = root.split_horizontally(w / 2);
    let epoch = |r: &EpochRecord| r.epoch as i32;
    let train_loss: Vec<(i32, f64)> = history
        .iter()
        .map(|r| (epoch(r), f64::from(r.train_loss)))
        .collect();
    let val_loss: Vec<(i32, f64)> = history
        .iter()
        .filter_map(|r| r.val_loss.map(|v| (epoch(r), f64::from(v))))
        .collect();
    let train_acc: Vec<(i32, f64)> = history
        .iter()
        .map(|r| (epoch(r), f64::from(r.train_acc) * 100.0))
        .collect();
    let val_acc: Vec<(i32, f64)> = history
        .iter()
        .filter_map(|r| r.val_acc.map(|v| (epoch(r), f64::from(v) * 100.0)))
        .collect();
    let top_loss = train_loss
        .iter()
        .chain(&val_loss)
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let top_loss = if top_loss > 0.0 { top_loss * 1.08 } else { 1.0 };
    panel(
        &left,
        "loss",
        top_loss,
        [&train_loss, &val_loss],
        best,
        SeriesLabelPosition::UpperRight,
    )?;
    panel(
        &right,
        "accuracy (%)",
        102.0,
        [&train_acc, &val_acc],
        best,
        SeriesLabelPosition::LowerRight,
    )
}

/// One panel of the curves: `series` are the training and validation points.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    top: f64,
    series: [&Vec<(i32, f64)>; 2],
    best: Option<usize>,
    legend: SeriesLabelPosition,
) -> Drawn<DB::ErrorType> {
    let last = series[0].iter().map(|p| p.0).max().unwrap_or(1).max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 18))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(54)
        .build_cartesian_2d(0..last + 1, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_labels(10)
        .x_label_formatter(&|x| match *x >= 1 && *x <= last {
            true => x.to_string(),
            false => String::new(),
        })
        .y_labels(6)
        .label_style((FAMILY, LABEL))
        .axis_desc_style((FAMILY, LABEL + 1))
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .draw()?;
    let markers = series[0].len() <= 30;
    for (points, colour, name) in [
        (series[0], TRAINING, "training"),
        (series[1], VALIDATION, "validation"),
    ] {
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 22, y)], colour.stroke_width(2))
            });
        if markers {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
        }
    }
    if let Some(best) = best {
        let x = i32::try_from(best).unwrap_or(last);
        chart
            .draw_series(DashedLineSeries::new(
                [(x, 0.0), (x, top)],
                6,
                4,
                BLACK.mix(0.6).stroke_width(1),
            ))?
            .label(format!("best epoch {best}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], BLACK.mix(0.6)));
        if let Some(&p) = series[1].iter().find(|p| p.0 == x) {
            chart.draw_series(std::iter::once(Circle::new(p, 6, BLACK.stroke_width(2))))?;
        }
    }
    chart
        .configure_series_labels()
        .position(legend)
        .label_font((FAMILY, LABEL))
        .background_style(WHITE.mix(0.85))
        .border_style(GRID)
        .draw()
}

/// The shade of a confusion cell holding `share` of its row: white to dark blue.
fn shade(share: f64) -> RGBColor {
    let s = share.clamp(0.0, 1.0);
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * s).round() as u8;
    RGBColor(mix(247, 8), mix(251, 48), mix(255, 107))
}

/// The heat map: rows are true classes, columns predicted ones, cells shaded by their share of
/// the row and labelled with their count.
fn confusion<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    m: &Metrics,
) -> Drawn<DB::ErrorType> {
    let g = Grid::of(m);
    let n = m.per_class.len() as u32;
    let (w, _) = root.dim_in_pixel();
    let total: usize = m.confusion.iter().flatten().sum();
    root.draw_text(
        &format!(
            "confusion matrix: {total} examples, accuracy {:.1}%",
            m.accuracy * 100.0
        ),
        &text(18, BLACK, HPos::Center, VPos::Center),
        (px(w / 2), 18),
    )?;
    root.draw_text(
        "predicted class",
        &text(LABEL, BLACK, HPos::Center, VPos::Center),
        (px(g.left + n * g.cell / 2), px(g.top - 16)),
    )?;
    root.draw_text(
        "true class",
        &text(LABEL, BLACK, HPos::Center, VPos::Center).transform(FontTransform::Rotate270),
        (14, px(g.top + n * g.cell / 2)),
    )?;
    let count_size = (g.cell / 3).clamp(10, 16);
    for (t, row) in m.confusion.iter().enumerate() {
        let support: usize = row.iter().sum();
        let y = g.top + t as u32 * g.cell;
        for (p, &count) in row.iter().enumerate() {
            let x = g.left + p as u32 * g.cell;
            let share = match support {
                0 => 0.0,
                s => count as f64 / s as f64,
            };
            root.draw(&Rectangle::new(
                [(px(x), px(y)), (px(x + g.cell), px(y + g.cell))],
                shade(share).filled(),
            ))?;
            root.draw(&Rectangle::new(
                [(px(x), px(y)), (px(x + g.cell), px(y + g.cell))],
                WHITE.stroke_width(1),
            ))?;
            let ink = if share > 0.5 { WHITE } else { BLACK };
            root.draw_text(
                &count.to_string(),
                &text(count_size, ink, HPos::Center, VPos::Center),
                (px(x + g.cell / 2), px(y + g.cell / 2)),
            )?;
        }
    }
    for (c, class) in m.per_class.iter().enumerate() {
        let name = short(&class.label);
        let middle = px(g.top + c as u32 * g.cell + g.cell / 2);
        root.draw_text(
            &name,
            &text(LABEL, BLACK, HPos::Right, VPos::Center),
            (px(g.left) - 6, middle),
        )?;
        let centre = px(g.left + c as u32 * g.cell + g.cell / 2);
        root.draw_text(
            &name,
            &text(LABEL, BLACK, HPos::Right, VPos::Center).transform(FontTransform::Rotate270),
            (centre, px(g.top + n * g.cell) + 6),
        )?;
    }
    Ok(())
}

/// Precision and recall of each class as two horizontal bars, with their values.
fn class_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    m: &Metrics,
) -> Drawn<DB::ErrorType> {
    let names = names_width(m.per_class.iter().map(|c| c.label.as_str())) + 50;
    let (w, _) = root.dim_in_pixel();
    let top = 90u32;
    let n = m.per_class.len() as u32;
    let bottom = top + n * BAR_ROW;
    root.draw_text(
        "precision and recall per class",
        &text(18, BLACK, HPos::Center, VPos::Center),
        (px(w / 2), 18),
    )?;
    for (i, (colour, name)) in [(TRAINING, "precision"), (VALIDATION, "recall")]
        .into_iter()
        .enumerate()
    {
        let x = names + i as u32 * 130;
        root.draw(&Rectangle::new(
            [(px(x), 44), (px(x + 16), 58)],
            colour.filled(),
        ))?;
        root.draw_text(
            name,
            &text(LABEL, BLACK, HPos::Left, VPos::Center),
            (px(x + 22), 51),
        )?;
    }
    for tick in 0..=4u32 {
        let x = px(names + tick * BAR_WIDTH / 4);
        root.draw(&PathElement::new(
            vec![(x, px(top) - 6), (x, px(bottom))],
            GRID.stroke_width(1),
        ))?;
        root.draw_text(
            &format!("{}%", tick * 25),
            &text(LABEL - 1, BLACK, HPos::Center, VPos::Top),
            (x, px(bottom) + 6),
        )?;
    }
    for (c, class) in m.per_class.iter().enumerate() {
        let y = top + c as u32 * BAR_ROW;
        root.draw_text(
            &format!("{} ({})", short(&class.label), class.support),
            &text(LABEL, BLACK, HPos::Right, VPos::Center),
            (px(names) - 8, px(y + BAR_ROW / 2)),
        )?;
        for (i, (value, colour)) in [(class.precision, TRAINING), (class.accuracy, VALIDATION)]
            .into_iter()
            .enumerate()
        {
            let y0 = y + 6 + i as u32 * 14;
            let length = value.map_or(0, |v| (v.clamp(0.0, 1.0) * f64::from(BAR_WIDTH)) as u32);
            if length > 0 {
                root.draw(&Rectangle::new(
                    [(px(names), px(y0)), (px(names + length), px(y0 + 12))],
                    colour.filled(),
                ))?;
            }
            let label = value.map_or("-".to_string(), |v| format!("{:.0}%", v * 100.0));
            root.draw_text(
                &label,
                &text(LABEL - 2, BLACK, HPos::Left, VPos::Center),
                (px(names + length) + 4, px(y0 + 6)),
            )?;
        }
    }
    Ok(())
}

/// The embeddings on their first two principal components: a dot per example in its class's
/// colour (held-out examples larger), mistakes circled, the classes named on the right.
fn embedding_map<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    map: &EmbeddingMap,
) -> Drawn<DB::ErrorType> {
    let (w, _) = root.dim_in_pixel();
    let (plot, key) = root.split_horizontally(
        w.saturating_sub(names_width(map.classes.iter().map(String::as_str)).max(110) + 48),
    );
    let range = |get: fn(&super::MapPoint) -> f32| {
        let (lo, hi) = map
            .points
            .iter()
            .map(|p| f64::from(get(p)))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        let pad = ((hi - lo) * 0.06).max(1e-3);
        (lo - pad)..(hi + pad)
    };
    let mut chart = ChartBuilder::on(&plot)
        .caption("embedding map (PCA)", (FAMILY, 18))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(54)
        .build_cartesian_2d(range(|p| p.x), range(|p| p.y))?;
    chart
        .configure_mesh()
        .x_desc(format!(
            "PC1 ({:.0}% of the variance)",
            map.explained[0] * 100.0
        ))
        .y_desc(format!(
            "PC2 ({:.0}% of the variance)",
            map.explained[1] * 100.0
        ))
        .label_style((FAMILY, LABEL - 1))
        .axis_desc_style((FAMILY, LABEL))
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .draw()?;
    let xy = |p: &super::MapPoint| (f64::from(p.x), f64::from(p.y));
    chart.draw_series(
        map.points
            .iter()
            .filter(|p| !p.held_out)
            .map(|p| Circle::new(xy(p), 3, class_colour(p.class).mix(0.7).filled())),
    )?;
    chart.draw_series(map.points.iter().filter(|p| p.held_out).flat_map(|p| {
        [
            Circle::new(xy(p), 6, class_colour(p.class).filled()),
            Circle::new(xy(p), 6, WHITE.stroke_width(1)),
        ]
    }))?;
    chart.draw_series(
        map.points
            .iter()
            .filter(|p| p.mistake)
            .map(|p| Circle::new(xy(p), 11, BLACK.stroke_width(2))),
    )?;
    let line = 22;
    let mut y = 60;
    key.draw_text(
        "classes",
        &text(LABEL + 1, BLACK, HPos::Left, VPos::Center),
        (10, y),
    )?;
    for (c, class) in map.classes.iter().enumerate() {
        y += line;
        key.draw(&Circle::new((18, y), 6, class_colour(c).filled()))?;
        key.draw_text(
            &short(class),
            &text(LABEL, BLACK, HPos::Left, VPos::Center),
            (32, y),
        )?;
    }
    y += line / 2;
    let grey = RGBColor(120, 120, 120);
    let mut entry = |what: &str, big: bool, ring: bool| -> Drawn<DB::ErrorType> {
        y += line;
        if ring {
            key.draw(&Circle::new((18, y), 9, BLACK.stroke_width(2)))?;
        } else {
            key.draw(&Circle::new(
                (18, y),
                if big { 6 } else { 3 },
                grey.filled(),
            ))?;
        }
        key.draw_text(what, &text(LABEL, BLACK, HPos::Left, VPos::Center), (32, y))
    };
    if map.points.iter().any(|p| !p.held_out) {
        entry("training", false, false)?;
    }
    if map.points.iter().any(|p| p.held_out) {
        entry("held out", true, false)?;
    }
    if map.points.iter().any(|p| p.mistake) {
        entry("mistake", false, true)?;
    }
    Ok(())
}
