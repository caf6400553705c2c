//! The image pipeline on the committed EfficientNet-Lite0: embeddings are cached by base, cut,
//! preprocessing and file content, so the base runs once per example.

use std::path::{Path, PathBuf};

use graft::base::BaseModel;
use graft::dataset::Dataset;
use graft::embeddings::Embeddings;

fn demo_class(class: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/data/tuxpaint-dev")
        .join(class)
}

fn small_set(root: &Path) -> Dataset {
    for class in ["fish", "planet"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        let mut files: Vec<_> = std::fs::read_dir(demo_class(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files.iter().take(3) {
            std::fs::copy(f, root.join(class).join(f.file_name().unwrap())).unwrap();
        }
    }
    Dataset::from_folder(root).unwrap()
}

#[test]
fn embeddings_are_cached_by_content_and_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let data = small_set(&tmp.path().join("data"));
    let base = BaseModel::open("efficientnet-lite0", &graft::base::BaseOptions::default()).unwrap();

    let (first, skipped) = Embeddings::from_dataset(&base, &data, Some(&cache), &|_| {}).unwrap();
    assert!(skipped.is_empty());
    assert_eq!(first.vectors().dim(), (6, 1280));
    let entries: Vec<PathBuf> = walk(&cache);
    assert_eq!(entries.len(), 6, "one cache entry per example: {entries:?}");

    // Without the cache the same numbers come out.
    let (fresh, _) = Embeddings::from_dataset(&base, &data, None, &|_| {}).unwrap();
    assert_eq!(fresh.vectors(), first.vectors());

    // Overwrite every entry with a marker: a second run must return the markers, not recompute.
    let marker: Vec<u8> = (0..1280)
        .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
        .collect();
    for e in &entries {
        std::fs::write(e, &marker).unwrap();
    }
    let (second, _) = Embeddings::from_dataset(&base, &data, Some(&cache), &|_| {}).unwrap();
    assert!(second
        .vectors()
        .rows()
        .into_iter()
        .all(|r| r[3] == 1.5 && r[1279] == 639.5));

    // Another cut is another cache: nothing is reused across cuts.
    let logits = BaseModel::open(
        "efficientnet-lite0",
        &graft::base::BaseOptions {
            cut: Some("logits".into()),
            ..graft::base::BaseOptions::default()
        },
    )
    .unwrap();
    let (other, _) = Embeddings::from_dataset(&logits, &data, Some(&cache), &|_| {}).unwrap();
    assert_eq!(other.vectors().ncols(), 1000);
    assert_eq!(walk(&cache).len(), 12);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
