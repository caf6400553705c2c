//! The PyTorch checkpoint reader on small fixtures (tests/fixtures/torch/, written by
//! make_fixtures.py there) and on hostile files. The real EfficientNet-Lite0 checkpoint is read in
//! tests/efficientnet_golden.rs, which obtains it through the zoo.

use std::path::{Path, PathBuf};

use graft_converters::torch::{self, DType, StateDict};
use graft_converters::Error;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/torch")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

fn f32s(sd: &StateDict, name: &str) -> Vec<f32> {
    sd.get(name).unwrap().to_f32().unwrap()
}

/// The values make_fixtures.py writes (`sample_state_dict`).
fn assert_sample(sd: &StateDict, prefix: &str) {
    let names: Vec<&str> = sd.iter().map(|(n, _)| n).collect();
    let expected: Vec<String> = [
        "layer.weight",
        "layer.weight_t",
        "head.bias",
        "head.tail",
        "half",
        "bn.num_batches_tracked",
    ]
    .iter()
    .map(|n| format!("{prefix}{n}"))
    .collect();
    assert_eq!(names, expected);
    let p = |n: &str| format!("{prefix}{n}");
    let w = sd.get(&p("layer.weight")).unwrap();
    assert_eq!((w.dtype, w.shape.clone()), (DType::F32, vec![2, 3]));
    assert_eq!(
        f32s(sd, &p("layer.weight")),
        [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5]
    );
    // Transposed view (stride (1, 3)) comes back contiguous.
    assert_eq!(sd.get(&p("layer.weight_t")).unwrap().shape, [3, 2]);
    assert_eq!(
        f32s(sd, &p("layer.weight_t")),
        [-1.0, 0.5, -0.5, 1.0, 0.0, 1.5]
    );
    // Two views at different offsets of one storage; the first through _rebuild_parameter.
    assert_eq!(f32s(sd, &p("head.bias")), [11.0, 12.0, 13.0]);
    assert_eq!(f32s(sd, &p("head.tail")), [13.0, 14.0]);
    let half = sd.get(&p("half")).unwrap();
    assert_eq!(half.dtype, DType::F16);
    assert_eq!(half.to_f32().unwrap(), [1.5, -2.0, 65504.0]);
    let count = sd.get(&p("bn.num_batches_tracked")).unwrap();
    assert_eq!((count.dtype, count.shape.len()), (DType::I64, 0));
    assert_eq!(count.data, 7i64.to_le_bytes());
    assert!(count.to_f32().is_err(), "an integer tensor is not float");
}

#[test]
fn legacy_format_reads_exact_values() {
    let sd = torch::load_state_dict(&fixture("legacy.pth")).unwrap();
    assert_sample(&sd, "");
}

#[test]
fn zip_format_reads_exact_values() {
    let sd = torch::load_state_dict(&fixture("zip.pth")).unwrap();
    assert_sample(&sd, "");
}

#[test]
fn nested_checkpoint_dict_names_tensors_with_dotted_paths() {
    // {"epoch": 3, "state_dict": {...}, "note": "hello"}: non-tensor values are skipped.
    let sd = torch::load_state_dict(&fixture("nested.pth")).unwrap();
    assert_sample(&sd, "state_dict.");
}

fn assert_refused(name: &str, global: &str, marker: &str) {
    let marker = Path::new("/tmp").join(marker);
    let _ = std::fs::remove_file(&marker);
    let bytes = read(name);
    // Bare pickles are wrapped as data.pkl of a zip checkpoint, the way they would arrive.
    let err = if bytes.starts_with(b"PK") {
        torch::from_bytes(&bytes).unwrap_err()
    } else {
        torch::from_bytes(&zip_with_pickle(&bytes)).unwrap_err()
    };
    assert!(
        matches!(&err, Error::UnsafeGlobal(g) if g == global),
        "{name}: {err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("refusing global {global}")),
        "{err}"
    );
    assert!(!marker.exists(), "{name}: payload ran");
}

/// A zip checkpoint whose data.pkl is `pickle` (written with the zip crate's stored method).
fn zip_with_pickle(pickle: &[u8]) -> Vec<u8> {
    // zip.pth's entries, copied, with data.pkl replaced.
    let mut src = zip::ZipArchive::new(std::io::Cursor::new(read("zip.pth"))).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..src.len() {
        let mut f = src.by_index(i).unwrap();
        let name = f.name().to_string();
        out.start_file(name.as_str(), opts).unwrap();
        if name.ends_with("data.pkl") {
            std::io::Write::write_all(&mut out, pickle).unwrap();
        } else {
            std::io::copy(&mut f, &mut out).unwrap();
        }
    }
    out.finish().unwrap().into_inner()
}

#[test]
fn os_system_through_global_and_reduce_is_refused() {
    assert_refused("os_system_global.pkl", "os.system", "graft_pwned_os_system");
    assert_refused(
        "os_system_in_zip.pth",
        "os.system",
        "graft_pwned_os_system_zip",
    );
}

#[test]
fn builtins_eval_through_stack_global_is_refused() {
    assert_refused(
        "builtins_eval_stack_global.pkl",
        "builtins.eval",
        "graft_pwned_builtins_eval",
    );
}

#[test]
fn subprocess_popen_through_stack_global_is_refused() {
    assert_refused(
        "subprocess_popen_stack_global.pkl",
        "subprocess.Popen",
        "graft_pwned_subprocess_popen",
    );
}

#[test]
fn storage_classes_are_only_accepted_from_torch() {
    // `torch.FloatStorage` is allowed; another attribute of torch is not.
    let pickle = b"\x80\x02ctorch\nload\nq\x00.";
    let err = torch::from_bytes(&zip_with_pickle(pickle)).unwrap_err();
    assert!(
        err.to_string().contains("refusing global torch.load"),
        "{err}"
    );
}

#[test]
fn truncated_files_are_errors() {
    for name in ["legacy.pth", "zip.pth"] {
        let bytes = read(name);
        for cut in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
            let r = torch::from_bytes(&bytes[..cut]);
            assert!(
                r.is_err(),
                "{name} cut at {cut} of {} was accepted",
                bytes.len()
            );
        }
    }
}

#[test]
fn corrupt_bytes_never_panic() {
    // Every byte of both fixtures replaced by several values: an error or a (different) state dict,
    // never a panic. Values that are still valid pickles may legitimately load.
    for name in ["legacy.pth", "zip.pth"] {
        let bytes = read(name);
        let mut errors = 0;
        for i in 0..bytes.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= x;
                if torch::from_bytes(&b).is_err() {
                    errors += 1;
                }
            }
        }
        assert!(
            errors > bytes.len(),
            "{name}: only {errors} corruptions detected"
        );
    }
}

#[test]
fn storage_larger_than_file_is_an_error() {
    let err = torch::load_state_dict(&fixture("storage_larger_than_file.pth")).unwrap_err();
    assert!(err.to_string().contains("storage 0"), "{err}");
    let err = torch::load_state_dict(&fixture("legacy_huge_count.pth")).unwrap_err();
    assert!(err.to_string().contains("storage 0"), "{err}");
}

#[test]
fn view_past_its_storage_is_an_error() {
    let err = torch::load_state_dict(&fixture("view_past_storage.pth")).unwrap_err();
    assert!(
        err.to_string().contains("reads past the end of storage 0"),
        "{err}"
    );
}

#[test]
fn not_a_checkpoint_is_an_error() {
    for bytes in [&b""[..], b"hello", b"PK\x03\x04garbage"] {
        assert!(torch::from_bytes(bytes).is_err());
    }
}

#[test]
fn safetensors_round_trip_keeps_names_dtypes_and_values() {
    let sd = torch::load_state_dict(&fixture("zip.pth")).unwrap();
    let bytes = torch::to_safetensors(&sd).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), sd.len());
    for (name, t) in sd.iter() {
        let v = st.tensor(name).unwrap();
        assert_eq!(v.shape(), t.shape.as_slice(), "{name}");
        assert_eq!(v.data(), t.data.as_slice(), "{name}");
    }
    assert_eq!(st.tensor("half").unwrap().dtype(), safetensors::Dtype::F16);
}

#[test]
fn views_sharing_storage_cannot_blow_up_memory() {
    // 64 full views of one 64 KiB storage would materialise 4 MiB from a 70 KB file.
    let err = torch::load_state_dict(&fixture("shared_storage_blowup.pth")).unwrap_err();
    assert!(err.to_string().contains("much larger than"), "{err}");
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // None wrapped in a million one-element tuples, then a million nested lists.
    let mut p = b"\x80\x02N".to_vec();
    p.extend(std::iter::repeat_n(0x85u8, 1_000_000));
    p.push(b'.');
    let err = torch::from_bytes(&zip_with_pickle(&p)).unwrap_err();
    assert!(err.to_string().contains("not a dict"), "{err}");
    let mut p = b"\x80\x02".to_vec();
    p.extend(std::iter::repeat_n(b']', 500_000));
    p.extend(std::iter::repeat_n(b'a', 499_999));
    p.push(b'.');
    assert!(torch::from_bytes(&zip_with_pickle(&p)).is_err());
}

#[test]
fn self_referencing_dict_terminates() {
    // d = {}; d["self"] = d; d["w"] = <tensor from zip.pth's storage 0>: the cycle is walked once.
    let mut p = b"\x80\x02}q\x00X\x04\x00\x00\x00selfh\x00s".to_vec();
    p.extend(b"X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(");
    p.extend(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06tQ");
    p.extend(b"K\x00K\x06\x85K\x01\x85\x89)tRs.");
    let sd = torch::from_bytes(&zip_with_pickle(&p)).unwrap();
    let names: Vec<&str> = sd.iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["w"]);
    assert_eq!(
        sd.get("w").unwrap().to_f32().unwrap(),
        [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5]
    );
}

#[test]
fn opcodes_that_instantiate_classes_are_refused() {
    // INST (protocol 0) names a class inline: refused even before looking at the name.
    let p = b"(ios\nsystem\nS'touch /tmp/graft_pwned_inst'\n.";
    let err = torch::from_bytes(&zip_with_pickle(p)).unwrap_err();
    assert!(err.to_string().contains("INST/OBJ"), "{err}");
    assert!(!Path::new("/tmp/graft_pwned_inst").exists());
}

#[test]
fn storages_claiming_more_than_the_file_can_inflate_to_are_refused_before_inflating() {
    // zip.pth's pickle, its 6-element storage 0 claiming 400 million floats (1.6 GB): a zip bomb
    // would deflate that from a few MB; the claim is refused before any entry is inflated.
    let mut p = b"\x80\x02}q\x00X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(".to_vec();
    p.extend(
        b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ",
    );
    p.extend(400_000_000u32.to_le_bytes());
    p.extend(b"tQK\x00K\x06\x85K\x01\x85\x89)tRs.");
    let bomb = zip_with_pickle(&p);
    let err = torch::from_bytes(&bomb).unwrap_err().to_string();
    assert!(
        err.contains("claim 1600000000 bytes") && err.contains("zip bomb"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{} bytes on disk", bomb.len())),
        "{err}"
    );
}

#[test]
fn a_checkpoint_re_zipped_with_deflate_still_loads() {
    let mut src = zip::ZipArchive::new(std::io::Cursor::new(read("zip.pth"))).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for i in 0..src.len() {
        let mut f = src.by_index(i).unwrap();
        out.start_file(f.name().to_string().as_str(), opts).unwrap();
        std::io::copy(&mut f, &mut out).unwrap();
    }
    let deflated = out.finish().unwrap().into_inner();
    let sd = torch::from_bytes(&deflated).unwrap();
    let original = torch::load_state_dict(&fixture("zip.pth")).unwrap();
    assert_eq!(sd.len(), original.len());
    for (name, t) in original.iter() {
        assert_eq!(sd.get(name).unwrap().data, t.data, "{name}");
    }
}
