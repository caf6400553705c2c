//! Pictures of what was learned, as SVG or PNG: the training curves (loss and accuracy, training
//! and validation, the best epoch marked), the confusion matrix as a heat map with its counts,
//! per-class precision and recall as bars, and a map of the embeddings (their first two principal
//! components, coloured by class, mistakes circled).
//!
//! Each picture is a [`Chart`] over data graft already has ([`EpochRecord`]s, [`Metrics`], an
//! [`EmbeddingMap`] made by [`EmbeddingMap::project`]); [`Chart::svg`] and [`Chart::png`] draw it
//! (with plotters), [`write_charts`] writes a set to a folder. PNG text is laid out with the
//! DejaVu Sans subset compiled into graft (`assets/fonts`), so no system font is needed; SVG text
//! names the `sans-serif` family and is drawn by whatever shows the file.

mod draw;
mod font;
mod pca;

use std::path::{Path, PathBuf};

use ndarray::ArrayView2;
use serde::Serialize;

use crate::metrics::{EpochRecord, Metrics};
use crate::{Error, Result};

pub use pca::principal_components;

/// One picture and the data it shows.
#[derive(Clone, Copy, Debug)]
pub enum Chart<'a> {
    /// Loss and accuracy per epoch, training and validation, with `best_epoch` (1-based, the
    /// lowest validation loss) marked.
    Curves {
        history: &'a [EpochRecord],
        best_epoch: Option<usize>,
    },
    /// The confusion matrix: one row per true class, one column per predicted class, each cell
    /// shaded by its share of the row and labelled with its count.
    Confusion(&'a Metrics),
    /// Precision and recall of each class as horizontal bars.
    ClassBars(&'a Metrics),
    /// The embeddings' 2-D map.
    Map(&'a EmbeddingMap),
}

/// An output format of [`Chart`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    /// The file extension: `svg` or `png`.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Svg => "svg",
            Format::Png => "png",
        }
    }
}

impl Chart<'_> {
    /// The file stem [`write_charts`] gives it: `training-curves`, `confusion-matrix`,
    /// `per-class`, `embedding-map`.
    pub fn name(&self) -> &'static str {
        match self {
            Chart::Curves { .. } => "training-curves",
            Chart::Confusion(_) => "confusion-matrix",
            Chart::ClassBars(_) => "per-class",
            Chart::Map(_) => "embedding-map",
        }
    }

    /// Width and height in pixels (confusion matrices and bars grow with the classes).
    pub fn size(&self) -> (u32, u32) {
        draw::size(self)
    }

    /// The chart as an SVG document.
    pub fn svg(&self) -> Result<String> {
        self.check()?;
        draw::svg(self)
    }

    /// The chart as PNG bytes (RGB, [`Chart::size`] pixels).
    pub fn png(&self) -> Result<Vec<u8>> {
        self.check()?;
        draw::png(self)
    }

    /// The chart in `format`, as bytes.
    pub fn render(&self, format: Format) -> Result<Vec<u8>> {
        match format {
            Format::Svg => self.svg().map(String::into_bytes),
            Format::Png => self.png(),
        }
    }

    /// Refuses data that cannot be drawn: no epochs, an empty or ragged confusion matrix, map
    /// points of classes it does not name.
    fn check(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Invalid(format!("{}: {msg}", self.name())));
        match self {
            Chart::Curves { history: [], .. } => bad("there are no epochs to draw".into()),
            Chart::Confusion(m) | Chart::ClassBars(m) => {
                let n = m.per_class.len();
                if n == 0 {
                    return bad("there are no classes".into());
                }
                if m.confusion.len() != n || m.confusion.iter().any(|row| row.len() != n) {
                    return bad(format!("the confusion matrix is not {n} x {n}"));
                }
                Ok(())
            }
            Chart::Map(map) => match map.points.iter().find(|p| p.class >= map.classes.len()) {
                Some(p) => bad(format!(
                    "a point of class {} but {} classes",
                    p.class,
                    map.classes.len()
                )),
                None if map.points.is_empty() => bad("there are no points".into()),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

/// One example on the embedding map.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MapPoint {
    /// Its coordinates on the first and second principal components.
    pub x: f32,
    pub y: f32,
    /// Its class (an index into [`EmbeddingMap::classes`]).
    pub class: usize,
    /// Whether it is drawn large and may be circled: a validation or evaluation example (training
    /// examples are small dots).
    pub held_out: bool,
    /// Whether the recognizer got it wrong (circled on the map).
    pub mistake: bool,
}

/// Embeddings projected on their first two principal components, with the share of the variance
/// each keeps.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EmbeddingMap {
    pub classes: Vec<String>,
    pub points: Vec<MapPoint>,
    /// The fraction of the total variance along each axis.
    pub explained: [f32; 2],
}

impl EmbeddingMap {
    /// Projects `vectors` `[n, dim]` (row `i` of class `labels[i]`, held out when
    /// `held_out[i]`, a mistake when `mistakes[i]`) on their first two principal components.
    pub fn project(
        vectors: ArrayView2<f32>,
        labels: &[usize],
        held_out: &[bool],
        mistakes: &[bool],
        classes: &[String],
    ) -> Result<EmbeddingMap> {
        let n = vectors.nrows();
        if labels.len() != n || held_out.len() != n || mistakes.len() != n {
            return Err(Error::Invalid(format!(
                "{n} embeddings but {} labels, {} held-out flags and {} mistake flags",
                labels.len(),
                held_out.len(),
                mistakes.len()
            )));
        }
        let (coords, explained) = principal_components(vectors)?;
        let points = (0..n)
            .map(|i| MapPoint {
                x: coords[[i, 0]],
                y: coords[[i, 1]],
                class: labels[i],
                held_out: held_out[i],
                mistake: mistakes[i],
            })
            .collect();
        Ok(EmbeddingMap {
            classes: classes.to_vec(),
            points,
            explained,
        })
    }
}

/// Writes each chart in each of `formats` to `dir` (made if missing) as `<name>.<ext>`,
/// atomically; returns the files written, in order.
pub fn write_charts(dir: &Path, charts: &[Chart], formats: &[Format]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut written = Vec::with_capacity(charts.len() * formats.len());
    for chart in charts {
        for &format in formats {
            let path = dir.join(format!("{}.{}", chart.name(), format.extension()));
            crate::atomic::write_atomic(&path, &chart.render(format)?)?;
            written.push(path);
        }
    }
    Ok(written)
}

/// The charts a recognizer's figures give: curves when there is a `history`, the confusion
/// matrix and per-class bars when there are `metrics`, the map when there is one.
pub fn charts<'a>(
    history: Option<(&'a [EpochRecord], Option<usize>)>,
    metrics: Option<&'a Metrics>,
    map: Option<&'a EmbeddingMap>,
) -> Vec<Chart<'a>> {
    let mut out = Vec::new();
    if let Some((history, best_epoch)) = history.filter(|(h, _)| !h.is_empty()) {
        out.push(Chart::Curves {
            history,
            best_epoch,
        });
    }
    if let Some(m) = metrics {
        out.push(Chart::Confusion(m));
        out.push(Chart::ClassBars(m));
    }
    if let Some(map) = map.filter(|m| !m.points.is_empty()) {
        out.push(Chart::Map(map));
    }
    out
}
