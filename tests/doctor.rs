//! The data doctor on the shipped images with planted problems: exact and near duplicates
//! (scaled up 2x, recompressed as JPEG) within a class and across classes, a mislabelled photo, a
//! tiny image, an unreadable file and a class of two; and what `graft doctor` prints for them.

mod common;

use std::path::{Path, PathBuf};

use graft::base::{BaseModel, BaseOptions};
use graft::cache::CacheOptions;
use graft::dataset::Dataset;
use graft::doctor::{Diagnosis, DoctorOptions};
use graft::task::{diagnose, Silent};
use graft::train::TrainOptions;
use image::{DynamicImage, ImageFormat};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/tuxpaint-dev")
}

/// The image at `from`, scaled by `scale`, written to `to` as a quality-85 JPEG.
fn recompressed(from: &Path, to: &Path, scale: f32) {
    let image = image::open(from).unwrap().to_rgba8();
    let mut white =
        image::RgbaImage::from_pixel(image.width(), image.height(), image::Rgba([255; 4]));
    image::imageops::overlay(&mut white, &image, 0, 0);
    let rgb = DynamicImage::ImageRgba8(white).to_rgb8();
    let (w, h) = (
        (rgb.width() as f32 * scale) as u32,
        (rgb.height() as f32 * scale) as u32,
    );
    let small = image::imageops::resize(&rgb, w, h, image::imageops::FilterType::CatmullRom);
    let file = std::fs::File::create(to).unwrap();
    image::codecs::jpeg::JpegEncoder::new_with_quality(file, 85)
        .encode_image(&small)
        .unwrap();
}

/// The shipped images in `dir` with the problems planted; returns the planted files.
struct Planted {
    exact: PathBuf,
    near: PathBuf,
    across: PathBuf,
    mislabelled: PathBuf,
    tiny: PathBuf,
    unreadable: PathBuf,
}

fn plant(dir: &Path) -> Planted {
    common::copy_dir(&shipped(), dir);
    let exact = dir.join("fish/copy-of-clownfish.png");
    std::fs::copy(dir.join("fish/animals__fish__clownfish.png"), &exact).unwrap();
    let near = dir.join("planet/mercury-again.jpg");
    recompressed(
        &dir.join("planet/space__planets__1_mercury.png"),
        &near,
        2.0,
    );
    let across = dir.join("tool/a-crossroads-sign.jpg");
    recompressed(
        &dir.join("roadsign/town__roadsigns__crossroads.png"),
        &across,
        2.0,
    );
    let mislabelled = dir.join("clothing/town__roadsigns__give_way_sign.png");
    std::fs::rename(
        dir.join("roadsign/town__roadsigns__give_way_sign.png"),
        &mislabelled,
    )
    .unwrap();
    let tiny = dir.join("insect/tiny.png");
    image::RgbImage::from_fn(20, 12, |x, y| {
        image::Rgb([(x * 12) as u8, (y * 20) as u8, 90])
    })
    .save_with_format(&tiny, ImageFormat::Png)
    .unwrap();
    let unreadable = dir.join("insect/notes.png");
    std::fs::write(&unreadable, "these are notes, not a picture\n").unwrap();
    // A class of two: two crops of the astronaut photo.
    std::fs::create_dir_all(dir.join("astronaut")).unwrap();
    let photo = image::open(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/astronaut.png"),
    )
    .unwrap();
    for (i, x) in [0u32, 200].into_iter().enumerate() {
        photo
            .crop_imm(x, 0, 300, 300)
            .save(dir.join(format!("astronaut/crop-{i}.png")))
            .unwrap();
    }
    Planted {
        exact,
        near,
        across,
        mislabelled,
        tiny,
        unreadable,
    }
}

fn diagnosis_of(data: &Path) -> Diagnosis {
    let base = BaseModel::open("efficientnet-lite0", &BaseOptions::default()).unwrap();
    let set = Dataset::from_folder(data).unwrap();
    let cache = CacheOptions::default();
    diagnose(
        &base,
        &set,
        TrainOptions::default().seed,
        &DoctorOptions::default(),
        &cache,
        &Silent,
    )
    .unwrap()
    .diagnosis
}

fn names(paths: impl IntoIterator<Item = PathBuf>) -> Vec<String> {
    paths
        .into_iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn planted_duplicates_mislabels_and_bad_files_are_found() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let planted = plant(&data);
    let d = diagnosis_of(&data);
    for (title, lines) in d.sections() {
        eprintln!("{title}:");
        for l in lines {
            eprintln!("  {l}");
        }
    }

    // The exact copy: cosine 1, in one class.
    let pair_with = |list: &[graft::doctor::Duplicate], file: &Path| {
        list.iter().find(|p| p.a == file || p.b == file).cloned()
    };
    let exact = pair_with(&d.duplicates_within, &planted.exact).expect("the exact copy");
    assert!(exact.cosine > 0.999, "{exact:?}");
    assert_eq!(
        (exact.a_class.as_str(), exact.b_class.as_str()),
        ("fish", "fish")
    );
    // The resized, recompressed copy: a near duplicate in its class.
    let near = pair_with(&d.duplicates_within, &planted.near).expect("the recompressed copy");
    assert!(near.cosine >= 0.97 && near.cosine < 0.9999, "{near:?}");
    assert!(
        names([near.a.clone(), near.b.clone()]).contains(&"space__planets__1_mercury.png".into())
    );
    // The roadsign filed under tool: a duplicate across classes.
    let across = pair_with(&d.duplicates_across, &planted.across).expect("the cross-class copy");
    let mut classes = [across.a_class.clone(), across.b_class.clone()];
    classes.sort();
    assert_eq!(classes, ["roadsign", "tool"]);
    // Leaks are the pairs split across training and validation, counted once each.
    let split: usize = d
        .duplicates_within
        .iter()
        .chain(&d.duplicates_across)
        .filter(|p| p.across_split)
        .count();
    assert_eq!(d.leaks(), split);

    // The give-way sign filed under clothing: its neighbours say roadsign.
    let mislabel = d
        .mislabels
        .iter()
        .find(|m| m.file == planted.mislabelled)
        .unwrap_or_else(|| panic!("the planted mislabel is not found: {:?}", d.mislabels));
    assert_eq!(
        (mislabel.class.as_str(), mislabel.likely.as_str()),
        ("clothing", "roadsign")
    );
    assert!(mislabel.share >= 0.8);

    // Files and classes.
    assert!(
        d.tiny
            .iter()
            .any(|t| t.file == planted.tiny && t.problem == "20x12 pixels"),
        "{:?}",
        d.tiny
    );
    assert_eq!(
        names(d.unreadable.iter().map(|u| u.file.clone())),
        ["notes.png"]
    );
    assert!(d.unreadable[0].file == planted.unreadable);
    let small = d
        .small_classes
        .iter()
        .find(|c| c.class == "astronaut")
        .expect("the class of two");
    assert_eq!(small.examples, 2);
    let counts: std::collections::HashMap<_, _> = d.classes.iter().cloned().collect();
    assert_eq!(counts["roadsign"], 20);
    assert_eq!(counts["astronaut"], 2);
    assert_eq!(d.imbalance, Some(10.0));
    assert_eq!(d.examples, 86 + 3 + 1 + 2);
}

#[test]
fn the_command_line_prints_the_findings_and_one_json_object() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let planted = plant(&data);
    let cache = tmp.path().join("cache");
    let (code, stdout, stderr) =
        common::run_graft(&cache, &["doctor", "--data", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    for needle in [
        "1 unreadable file(s)",
        "likely mislabel(s)",
        "near-duplicate pair(s) in two classes",
        "astronaut: 2 examples",
        "unbalanced",
    ] {
        assert!(stdout.contains(needle), "no '{needle}' in:\n{stdout}");
    }
    assert!(
        stdout.contains(planted.mislabelled.to_str().unwrap()),
        "{stdout}"
    );
    let (code, stdout, stderr) = common::run_graft(
        &cache,
        &[
            "--json",
            "-q",
            "doctor",
            "--data",
            data.to_str().unwrap(),
            "--neighbours",
            "3",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    assert!(json["findings"].as_u64().unwrap() >= 7, "{json}");
    assert_eq!(json["diagnosis"]["examples"], 92);
    assert_eq!(json["diagnosis"]["unreadable"].as_array().unwrap().len(), 1);
    let (code, _, stderr) = common::run_graft(
        &cache,
        &[
            "doctor",
            "--data",
            data.to_str().unwrap(),
            "--mislabel-share",
            "0",
        ],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("--mislabel-share"), "{stderr}");
}

/// The `i`-th file (sorted) of `class` in `dir`.
fn nth(dir: &Path, class: &str, i: usize) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(class))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files[i].clone()
}

/// Recall and precision on ten planted duplicates (five exact copies, five copies scaled 2x and
/// recompressed as JPEG, one of them filed in another class) and five pairs of swapped labels
/// (ten mislabelled files), with each detector's false flags on the examples nothing was
/// planted on (the shipped set's own near-duplicates, the stoplight recolourings and a mirrored
/// sign, count as false flags here).
#[test]
fn recall_and_false_flags_on_many_planted_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    common::copy_dir(&shipped(), &dir);
    let mut duplicates: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (n, (class, i)) in [
        ("clothing", 0),
        ("fish", 1),
        ("insect", 2),
        ("instrument", 3),
        ("planet", 1),
    ]
    .into_iter()
    .enumerate()
    {
        let original = nth(&dir, class, i);
        let copy = dir.join(class).join(format!("zz-exact-copy-{n}.png"));
        std::fs::copy(&original, &copy).unwrap();
        duplicates.push((original, copy));
    }
    for (n, (class, i, into)) in [
        ("roadsign", 5, "roadsign"),
        ("tool", 6, "tool"),
        ("fish", 7, "fish"),
        ("clothing", 8, "clothing"),
        ("planet", 4, "tool"),
    ]
    .into_iter()
    .enumerate()
    {
        let original = nth(&dir, class, i);
        let copy = dir.join(into).join(format!("zz-scaled-copy-{n}.jpg"));
        recompressed(&original, &copy, 2.0);
        duplicates.push((original, copy));
    }
    let mut swapped: Vec<PathBuf> = Vec::new();
    for ((a, i), (b, j)) in [
        (("roadsign", 10), ("planet", 7)),
        (("tool", 2), ("fish", 3)),
        (("clothing", 3), ("roadsign", 12)),
        (("instrument", 5), ("planet", 8)),
        (("insect", 5), ("tool", 9)),
    ] {
        let (x, y) = (nth(&dir, a, i), nth(&dir, b, j));
        let (x_to, y_to) = (
            dir.join(b).join(x.file_name().unwrap()),
            dir.join(a).join(y.file_name().unwrap()),
        );
        std::fs::rename(&x, &x_to).unwrap();
        std::fs::rename(&y, &y_to).unwrap();
        swapped.extend([x_to, y_to]);
    }

    let d = diagnosis_of(&dir);
    let pairs: Vec<&graft::doctor::Duplicate> = d
        .duplicates_within
        .iter()
        .chain(&d.duplicates_across)
        .collect();
    let found_duplicates = duplicates
        .iter()
        .filter(|(o, c)| {
            pairs
                .iter()
                .any(|p| (&p.a == o && &p.b == c) || (&p.a == c && &p.b == o))
        })
        .count();
    let flagged_mislabels: Vec<&PathBuf> = d.mislabels.iter().map(|m| &m.file).collect();
    let found_mislabels = swapped
        .iter()
        .filter(|f| flagged_mislabels.contains(f))
        .count();
    // The examples nothing was planted on, and the flags they got.
    let planted: Vec<&PathBuf> = duplicates
        .iter()
        .flat_map(|(o, c)| [o, c])
        .chain(&swapped)
        .collect();
    let clean = d.examples - planted.len();
    // Each detector's false flags: examples nothing was planted on that it flags.
    let unplanted = |files: Vec<&PathBuf>| -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = files
            .into_iter()
            .filter(|f| !planted.contains(f))
            .cloned()
            .collect();
        out.sort();
        out.dedup();
        out
    };
    let duplicate_flags = unplanted(pairs.iter().flat_map(|p| [&p.a, &p.b]).collect());
    let mislabel_flags = unplanted(flagged_mislabels.clone());
    let duplicate_recall = found_duplicates as f64 / duplicates.len() as f64;
    let mislabel_recall = found_mislabels as f64 / swapped.len() as f64;
    let rate = |flags: &[PathBuf]| flags.len() as f64 / clean as f64;
    eprintln!(
        "doctor on planted problems: duplicates found {found_duplicates}/{} ({:.0} %), swapped \
         labels found {found_mislabels}/{} ({:.0} %); of the {clean} examples nothing was planted \
         on, {} ({:.1} %) are flagged as duplicates: {duplicate_flags:?}, {} ({:.1} %) as \
         mislabels: {mislabel_flags:?}",
        duplicates.len(),
        duplicate_recall * 100.0,
        swapped.len(),
        mislabel_recall * 100.0,
        duplicate_flags.len(),
        rate(&duplicate_flags) * 100.0,
        mislabel_flags.len(),
        rate(&mislabel_flags) * 100.0,
    );
    assert!(
        duplicate_recall >= 0.9,
        "duplicates found {found_duplicates}/10"
    );
    assert!(
        mislabel_recall >= 0.7,
        "swapped labels found {found_mislabels}/10"
    );
    assert!(rate(&duplicate_flags) <= 0.1, "{duplicate_flags:?}");
    assert!(rate(&mislabel_flags) <= 0.1, "{mislabel_flags:?}");
}
