//! The data doctor: what in a labelled folder will make a small recognizer disappoint, found
//! from the examples' embeddings (each example embedded once, through the cache) before any
//! training: near-duplicates within a class and across classes, and those that would sit on both
//! sides of the train/validation split; likely mislabels (examples whose nearest neighbours vote
//! firmly for another class); outliers far from their class; classes too small or too unbalanced
//! for the split; unreadable and tiny files.

use std::path::{Path, PathBuf};

use ndarray::Axis;
use serde::Serialize;

use crate::dataset::{count_labels, stratified_split, DEFAULT_VAL_SPLIT};
use crate::embeddings::Embeddings;
use crate::reject::unit_rows;
use crate::{Error, Result};

/// What the doctor looks for, and how strict it is.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct DoctorOptions {
    /// Two examples whose embeddings' cosine similarity is at least this are near-duplicates.
    /// With EfficientNet-Lite0 on the shipped images, copies scaled up 1.5-3x and recompressed
    /// as JPEG measure 0.977-0.994 against their original, recolourings of one drawing
    /// 0.98-0.99, but copies shrunk to half of a 100-150 px original only 0.83-0.93. Default 0.97
    #[cfg_attr(feature = "cli", arg(long = "duplicate-cosine", default_value_t = DoctorOptions::default().duplicate_cosine))]
    pub duplicate_cosine: f32,
    /// Nearest neighbours (by cosine) that vote on each example's class. Default 5
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DoctorOptions::default().neighbours))]
    pub neighbours: usize,
    /// An example is a likely mislabel when at least this share of its neighbours belong to one
    /// other class. Default 0.8
    #[cfg_attr(feature = "cli", arg(long = "mislabel-share", default_value_t = DoctorOptions::default().mislabel_share))]
    pub mislabel_share: f32,
    /// An example is an outlier when its cosine to its class's centroid lies this many robust
    /// deviations (1.4826 x the median absolute deviation) below the class's median. Default 3.5
    #[cfg_attr(feature = "cli", arg(long = "outlier-deviations", default_value_t = DoctorOptions::default().outlier_deviations))]
    pub outlier_deviations: f32,
    /// A class with fewer examples is too small (with 30 % held out it validates on one or two).
    /// Default 5
    #[cfg_attr(feature = "cli", arg(long = "min-class", default_value_t = DoctorOptions::default().min_class))]
    pub min_class: usize,
    /// Classes are too unbalanced when the largest has more than this many times the examples
    /// of the smallest. Default 5
    #[cfg_attr(feature = "cli", arg(long = "max-imbalance", default_value_t = DoctorOptions::default().max_imbalance))]
    pub max_imbalance: f32,
    /// Images whose shorter side has fewer pixels are tiny (the bases take 192-256). Default 32
    #[cfg_attr(feature = "cli", arg(long = "min-side", default_value_t = DoctorOptions::default().min_side))]
    pub min_side: u32,
}

impl Default for DoctorOptions {
    fn default() -> DoctorOptions {
        DoctorOptions {
            duplicate_cosine: 0.97,
            neighbours: 5,
            mislabel_share: 0.8,
            outlier_deviations: 3.5,
            min_class: 5,
            max_imbalance: 5.0,
            min_side: 32,
        }
    }
}

impl DoctorOptions {
    /// Checks the options' ranges.
    pub fn validate(&self) -> Result<()> {
        if !(self.duplicate_cosine > 0.0 && self.duplicate_cosine <= 1.0) {
            return Err(Error::Invalid(format!(
                "--duplicate-cosine must be in (0, 1], got {}",
                self.duplicate_cosine
            )));
        }
        if self.neighbours == 0 {
            return Err(Error::Invalid("--neighbours must be at least 1".into()));
        }
        if !(self.mislabel_share > 0.0 && self.mislabel_share <= 1.0) {
            return Err(Error::Invalid(format!(
                "--mislabel-share must be in (0, 1], got {}",
                self.mislabel_share
            )));
        }
        if !(self.outlier_deviations > 0.0 && self.max_imbalance >= 1.0) {
            return Err(Error::Invalid(
                "--outlier-deviations must be positive and --max-imbalance at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Two examples that are (nearly) the same.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Duplicate {
    pub a: PathBuf,
    pub a_class: String,
    pub b: PathBuf,
    pub b_class: String,
    /// Their embeddings' cosine similarity.
    pub cosine: f32,
    /// One is in the training split and the other in validation (as `graft train` splits).
    pub across_split: bool,
}

/// An example whose neighbours vote for another class.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Mislabel {
    pub file: PathBuf,
    pub class: String,
    /// The class its neighbours vote for.
    pub likely: String,
    /// The share of its neighbours in that class.
    pub share: f32,
}

/// An example far from the rest of its class.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outlier {
    pub file: PathBuf,
    pub class: String,
    /// Its cosine similarity to the centroid of the other examples of its class.
    pub cosine: f32,
    /// The class's median of that similarity.
    pub class_median: f32,
}

/// A class the split or the head will struggle with.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassProblem {
    pub class: String,
    pub examples: usize,
    /// Examples it gets in the validation split.
    pub validation: usize,
    pub problem: String,
}

/// A file the doctor could not use, or an image too small for the base.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileProblem {
    pub file: PathBuf,
    pub problem: String,
}

/// Everything the doctor found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Diagnosis {
    /// Examples examined (embedded) and classes, with their counts.
    pub examples: usize,
    pub classes: Vec<(String, usize)>,
    /// Near-duplicates within one class, most similar first.
    pub duplicates_within: Vec<Duplicate>,
    /// Near-duplicates in two classes, most similar first.
    pub duplicates_across: Vec<Duplicate>,
    pub mislabels: Vec<Mislabel>,
    pub outliers: Vec<Outlier>,
    pub small_classes: Vec<ClassProblem>,
    /// Largest class count over smallest, when above the limit.
    pub imbalance: Option<f32>,
    pub unreadable: Vec<FileProblem>,
    pub tiny: Vec<FileProblem>,
}

impl Diagnosis {
    /// Pairs of near-duplicates on both sides of the train/validation split (they inflate
    /// validation accuracy).
    pub fn leaks(&self) -> usize {
        self.duplicates_within
            .iter()
            .chain(&self.duplicates_across)
            .filter(|d| d.across_split)
            .count()
    }

    /// The findings as text: one section (title, lines) for each kind found, in the order a
    /// user should fix them (files, classes, duplicates, mislabels, outliers).
    pub fn sections(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        let mut add = |title: String, lines: Vec<String>| {
            if !lines.is_empty() {
                out.push((title, lines));
            }
        };
        let files = |list: &[FileProblem]| -> Vec<String> {
            list.iter()
                .map(|f| format!("{}: {}", f.file.display(), f.problem))
                .collect()
        };
        add(
            format!("{} unreadable file(s)", self.unreadable.len()),
            files(&self.unreadable),
        );
        add(
            format!("{} tiny image(s)", self.tiny.len()),
            files(&self.tiny),
        );
        let mut classes: Vec<String> = self
            .small_classes
            .iter()
            .map(|c| {
                format!(
                    "{}: {} ({} in validation)",
                    c.class, c.problem, c.validation
                )
            })
            .collect();
        if let Some(ratio) = self.imbalance {
            let counts: Vec<String> = self
                .classes
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            classes.push(format!(
                "unbalanced: the largest class has {ratio:.1}x the examples of the smallest ({})",
                counts.join(", ")
            ));
        }
        add("classes".to_string(), classes);
        let pairs = |list: &[Duplicate]| -> Vec<String> {
            list.iter()
                .map(|d| {
                    format!(
                        "{} ({}) ~ {} ({}): cosine {:.3}{}",
                        d.a.display(),
                        d.a_class,
                        d.b.display(),
                        d.b_class,
                        d.cosine,
                        if d.across_split {
                            ", split across training and validation"
                        } else {
                            ""
                        }
                    )
                })
                .collect()
        };
        add(
            format!(
                "{} near-duplicate pair(s) in two classes",
                self.duplicates_across.len()
            ),
            pairs(&self.duplicates_across),
        );
        add(
            format!(
                "{} near-duplicate pair(s) within a class ({} across the split)",
                self.duplicates_within.len(),
                self.duplicates_within
                    .iter()
                    .filter(|d| d.across_split)
                    .count()
            ),
            pairs(&self.duplicates_within),
        );
        add(
            format!("{} likely mislabel(s)", self.mislabels.len()),
            self.mislabels
                .iter()
                .map(|m| {
                    format!(
                        "{} is labelled {}; {:.0} % of its neighbours are {}",
                        m.file.display(),
                        m.class,
                        m.share * 100.0,
                        m.likely
                    )
                })
                .collect(),
        );
        add(
            format!("{} outlier(s)", self.outliers.len()),
            self.outliers
                .iter()
                .map(|o| {
                    format!(
                        "{} ({}): cosine {:.3} to its class, whose median is {:.3}",
                        o.file.display(),
                        o.class,
                        o.cosine,
                        o.class_median
                    )
                })
                .collect(),
        );
        out
    }

    /// How many findings there are in all.
    pub fn findings(&self) -> usize {
        self.duplicates_within.len()
            + self.duplicates_across.len()
            + self.mislabels.len()
            + self.outliers.len()
            + self.small_classes.len()
            + usize::from(self.imbalance.is_some())
            + self.unreadable.len()
            + self.tiny.len()
    }
}

/// Examines `embeddings` (of files as they are: no clips or augmented copies), split as `graft
/// train` splits with `seed`; `skipped` are the files that could not be embedded, with why.
pub fn examine(
    embeddings: &Embeddings,
    skipped: &[(PathBuf, String)],
    seed: u64,
    options: &DoctorOptions,
) -> Result<Diagnosis> {
    options.validate()?;
    let classes = embeddings.classes();
    let labels = embeddings.labels();
    let files: Vec<&Path> = embeddings.sources().iter().map(|s| s.file()).collect();
    let n = labels.len();
    let counts = embeddings.counts();
    let unit = unit_rows(embeddings.vectors());
    let (_, val) = stratified_split(labels, DEFAULT_VAL_SPLIT, seed)?;
    let mut in_val = vec![false; n];
    for &i in &val {
        in_val[i] = true;
    }
    let val_counts = count_labels(val.iter().map(|&i| labels[i]), classes.len());
    let name = |i: usize| classes[labels[i]].clone();

    let mut diagnosis = Diagnosis {
        examples: n,
        classes: classes
            .iter()
            .cloned()
            .zip(counts.iter().copied())
            .collect(),
        ..Diagnosis::default()
    };
    let k = options.neighbours.min(n.saturating_sub(1));
    let mut nearest: Vec<Vec<(f32, usize)>> = vec![Vec::new(); n];
    // Similarities a block of rows at a time: memory stays at BLOCK x n.
    for start in (0..n).step_by(BLOCK) {
        let end = (start + BLOCK).min(n);
        let sims = unit.slice(ndarray::s![start..end, ..]).dot(&unit.t());
        for (r, row) in sims.axis_iter(Axis(0)).enumerate() {
            let i = start + r;
            let mut others: Vec<(f32, usize)> = row
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(j, &s)| (s, j))
                .collect();
            for &(s, j) in &others {
                if j > i && s >= options.duplicate_cosine {
                    let d = Duplicate {
                        a: files[i].to_path_buf(),
                        a_class: name(i),
                        b: files[j].to_path_buf(),
                        b_class: name(j),
                        cosine: s.min(1.0),
                        across_split: in_val[i] != in_val[j],
                    };
                    match labels[i] == labels[j] {
                        true => diagnosis.duplicates_within.push(d),
                        false => diagnosis.duplicates_across.push(d),
                    }
                }
            }
            others.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            others.truncate(k);
            nearest[i] = others;
        }
    }
    for list in [
        &mut diagnosis.duplicates_within,
        &mut diagnosis.duplicates_across,
    ] {
        list.sort_by(|a, b| b.cosine.total_cmp(&a.cosine));
    }

    // Likely mislabels: the neighbours' vote.
    for (i, near) in nearest.iter().enumerate() {
        if near.is_empty() {
            continue;
        }
        let votes = count_labels(near.iter().map(|&(_, j)| labels[j]), classes.len());
        let (best, &count) = votes
            .iter()
            .enumerate()
            .filter(|&(c, _)| c != labels[i])
            .max_by_key(|&(c, v)| (*v, std::cmp::Reverse(c)))
            .unwrap_or((labels[i], &0));
        let share = count as f32 / near.len() as f32;
        if best != labels[i] && share >= options.mislabel_share {
            diagnosis.mislabels.push(Mislabel {
                file: files[i].to_path_buf(),
                class: name(i),
                likely: classes[best].clone(),
                share,
            });
        }
    }
    diagnosis
        .mislabels
        .sort_by(|a, b| b.share.total_cmp(&a.share));

    // Outliers: cosine to the centroid of the rest of the class, against the class's spread.
    for class in 0..classes.len() {
        let members: Vec<usize> = (0..n).filter(|&i| labels[i] == class).collect();
        if members.len() < 4 {
            continue;
        }
        let sum = members
            .iter()
            .fold(ndarray::Array1::<f32>::zeros(unit.ncols()), |acc, &i| {
                acc + unit.row(i)
            });
        let cosines: Vec<f32> = members
            .iter()
            .map(|&i| {
                let rest = &sum - &unit.row(i);
                let norm = rest.dot(&rest).sqrt();
                if norm > 0.0 {
                    rest.dot(&unit.row(i)) / norm
                } else {
                    1.0
                }
            })
            .collect();
        let middle = median(cosines.clone());
        let deviations: Vec<f32> = cosines.iter().map(|c| (c - middle).abs()).collect();
        let spread = 1.4826 * median(deviations).max(1e-6);
        for (&i, &c) in members.iter().zip(&cosines) {
            if (middle - c) / spread > options.outlier_deviations {
                diagnosis.outliers.push(Outlier {
                    file: files[i].to_path_buf(),
                    class: name(i),
                    cosine: c,
                    class_median: middle,
                });
            }
        }
    }

    // Classes.
    for (c, class) in classes.iter().enumerate() {
        let problem = if counts[c] < options.min_class {
            Some(format!(
                "{} examples (fewer than {}): too few to learn from and to validate on",
                counts[c], options.min_class
            ))
        } else if val_counts[c] == 0 {
            Some("no example left for validation".to_string())
        } else {
            None
        };
        if let Some(problem) = problem {
            diagnosis.small_classes.push(ClassProblem {
                class: class.clone(),
                examples: counts[c],
                validation: val_counts[c],
                problem,
            });
        }
    }
    let (min, max) = counts
        .iter()
        .fold((usize::MAX, 0), |(lo, hi), &c| (lo.min(c), hi.max(c)));
    if min > 0 && max as f32 > options.max_imbalance * min as f32 {
        diagnosis.imbalance = Some(max as f32 / min as f32);
    }

    // Files.
    diagnosis.unreadable = skipped
        .iter()
        .map(|(file, why)| FileProblem {
            file: file.clone(),
            problem: why.clone(),
        })
        .collect();
    for file in &files {
        if let Some((w, h)) = image_size(file) {
            if w.min(h) < options.min_side {
                diagnosis.tiny.push(FileProblem {
                    file: file.to_path_buf(),
                    problem: format!("{w}x{h} pixels"),
                });
            }
        }
    }
    diagnosis.tiny.dedup();
    Ok(diagnosis)
}

/// Rows of similarities computed at once.
const BLOCK: usize = 1024;

fn median(mut values: Vec<f32>) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f32::total_cmp);
    let mid = values.len() / 2;
    match values.len() % 2 {
        0 => (values[mid - 1] + values[mid]) / 2.0,
        _ => values[mid],
    }
}

/// The width and height a PNG or JPEG header states, `None` for other files.
fn image_size(file: &Path) -> Option<(u32, u32)> {
    let reader = image::ImageReader::open(file)
        .ok()?
        .with_guessed_format()
        .ok()?;
    reader.format()?;
    reader.into_dimensions().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn bad_options_are_invalid() {
        let bad = [
            DoctorOptions {
                duplicate_cosine: 1.5,
                ..DoctorOptions::default()
            },
            DoctorOptions {
                neighbours: 0,
                ..DoctorOptions::default()
            },
            DoctorOptions {
                mislabel_share: 0.0,
                ..DoctorOptions::default()
            },
            DoctorOptions {
                max_imbalance: 0.5,
                ..DoctorOptions::default()
            },
        ];
        for o in bad {
            assert!(matches!(o.validate(), Err(Error::Invalid(_))), "{o:?}");
        }
        assert!(DoctorOptions::default().validate().is_ok());
    }
}
