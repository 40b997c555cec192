//! Safetensors weight reader: f32/f16/bf16 round trips (host and GPU, chunked uploads),
//! error variants and their messages, and a no-panic fuzz over truncations and byte flips.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cnnvis::model::weights::{
    bf16_to_f32, f16_to_f32, ModelError, TensorInfo, WeightDType, Weights,
};
use cnnvis::Tensor;
use common::{ctx, Rng};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

/// A temp file named after the process and test, removed on drop (also when a test fails).
struct TempFile(PathBuf);

impl TempFile {
    fn new(test: &str) -> Self {
        TempFile(std::env::temp_dir().join(format!(
            "cnnvis-weights-{}-{test}.safetensors",
            std::process::id()
        )))
    }
    fn write(test: &str, bytes: &[u8]) -> Self {
        let f = TempFile::new(test);
        std::fs::write(&f.0, bytes).expect("write temp file");
        f
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn name(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One tensor to serialize: name, dtype, shape, raw little-endian bytes.
struct Raw {
    name: &'static str,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn serialize(tensors: &[Raw], meta: Option<HashMap<String, String>>) -> Vec<u8> {
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|t| {
            let v = TensorView::new(t.dtype, t.shape.clone(), &t.bytes).expect("view");
            (t.name, v)
        })
        .collect();
    safetensors::serialize(views, meta).expect("serialize")
}

fn leak(bytes: Vec<u8>) -> &'static [u8] {
    Box::leak(bytes.into_boxed_slice())
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn u16_bytes(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Independent f16 decoding in f64 arithmetic, straight from the IEEE 754 definition.
fn f16_reference(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f64 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let man = (h & 0x3ff) as f64;
    let v = match exp {
        0 => sign * man * 2f64.powi(-24),
        31 if man == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        _ => sign * (1.0 + man / 1024.0) * 2f64.powi(exp - 15),
    };
    v as f32
}

/// Equal as values, with NaN == NaN and the sign of zero checked.
fn assert_same(name: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else {
            g.to_bits() == w.to_bits()
        };
        assert!(ok, "{name}[{i}]: got {g:e}, want {w:e}");
    }
}

/// The mixed-dtype file of the round-trip tests, with the f32 values each tensor must read as.
fn sample(large: bool) -> (Vec<Raw>, Vec<Vec<f32>>) {
    let mut rng = Rng::new(7);
    let mut raws = Vec::new();
    let mut want = Vec::new();

    let a = rng.vec(3 * 5 * 7, -3.0, 3.0);
    raws.push(Raw {
        name: "conv.weight",
        dtype: Dtype::F32,
        shape: vec![3, 5, 7],
        bytes: f32_bytes(&a),
    });
    want.push(a);

    // Every f16 bit pattern: normals, subnormals, ±0, ±inf, NaNs.
    let all: Vec<u16> = (0..=u16::MAX).collect();
    raws.push(Raw {
        name: "half.all_patterns",
        dtype: Dtype::F16,
        shape: vec![65536],
        bytes: u16_bytes(&all),
    });
    want.push(all.iter().map(|&h| f16_reference(h)).collect());

    let special: Vec<u16> = vec![
        0x0000, 0x8000, 0x3c00, 0xc000, 0x3555, 0x7bff, 0x0001, 0x03ff, 0x8001, 0x0400, 0x7c00,
        0xfc00, 0x7e00, 0x3800, 0xb800,
    ];
    let special_f32 = vec![
        0.0,
        -0.0,
        1.0,
        -2.0,
        0.333_251_95,
        65504.0,
        5.960_464_5e-8,
        6.097_555e-5,
        -5.960_464_5e-8,
        6.103_515_6e-5,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        0.5,
        -0.5,
    ];
    raws.push(Raw {
        name: "half.special",
        dtype: Dtype::F16,
        shape: vec![3, 5],
        bytes: u16_bytes(&special),
    });
    want.push(special_f32);

    // bf16: random f32s cut to their upper half, plus ±inf, NaN, ±0.
    let mut b: Vec<u16> = (0..2 * 9 * 3 - 5)
        .map(|_| (rng.uniform(-100.0, 100.0).to_bits() >> 16) as u16)
        .collect();
    b.extend([0x7f80, 0xff80, 0x7fc0, 0x0000, 0x8000]);
    raws.push(Raw {
        name: "brain.bias",
        dtype: Dtype::BF16,
        shape: vec![2, 9, 3],
        bytes: u16_bytes(&b),
    });
    want.push(
        b.iter()
            .map(|&x| f32::from_bits(u32::from(x) << 16))
            .collect(),
    );

    if large {
        // More than one 1 Mi-element chunk, not a multiple of it.
        let n = 3 * 500_001;
        let big: Vec<f32> = (0..n).map(|i| (i as f32) * 0.25 - 1000.0).collect();
        raws.push(Raw {
            name: "fc.weight",
            dtype: Dtype::F32,
            shape: vec![3, 500_001],
            bytes: f32_bytes(&big),
        });
        want.push(big);
        // f16 chunks are 2 MiB of file bytes: exercise that path past a chunk boundary too.
        let hn = 1_100_003;
        let hb: Vec<u16> = (0..hn).map(|i| (i % 0x7800) as u16).collect();
        want.push(hb.iter().map(|&h| f16_reference(h)).collect());
        raws.push(Raw {
            name: "fc.half",
            dtype: Dtype::F16,
            shape: vec![hn],
            bytes: u16_bytes(&hb),
        });
    }
    (raws, want)
}

fn meta() -> HashMap<String, String> {
    HashMap::from([
        (
            "cnnvis.graph".to_string(),
            r#"{"layers":[{"op":"conv2d"}]}"#.to_string(),
        ),
        ("format".to_string(), "pt".to_string()),
    ])
}

fn check_round_trip(w: &Weights, raws: &[Raw], want: &[Vec<f32>], gpu: bool) {
    let mut names: Vec<&str> = raws.iter().map(|r| r.name).collect();
    names.sort_unstable();
    assert_eq!(w.names(), names);
    w.check_names(&names).expect("check_names on the exact set");
    assert_eq!(w.metadata(), Some(&meta()));
    for (raw, want) in raws.iter().zip(want) {
        let dtype = match raw.dtype {
            Dtype::F32 => WeightDType::F32,
            Dtype::F16 => WeightDType::F16,
            Dtype::BF16 => WeightDType::BF16,
            _ => unreachable!(),
        };
        assert_eq!(
            w.info(raw.name),
            Some(TensorInfo {
                dtype,
                shape: raw.shape.clone()
            })
        );
        assert_same(raw.name, &w.read_f32(raw.name).expect("read_f32"), want);
        if gpu {
            let t = w.upload(ctx(), raw.name, &raw.shape).expect("upload");
            assert_eq!(t.shape(), &raw.shape[..]);
            assert_same(raw.name, &t.download(ctx()).expect("download"), want);
        }
    }
}

#[test]
fn f16_conversion_matches_ieee_definition_for_every_pattern() {
    for h in 0..=u16::MAX {
        assert_same(&format!("{h:#06x}"), &[f16_to_f32(h)], &[f16_reference(h)]);
    }
    assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
    assert_eq!(f16_to_f32(0x7bff), 65504.0);
    assert!(f16_to_f32(0x7c01).is_nan());
    assert_eq!(bf16_to_f32(0x3f80), 1.0);
    assert_eq!(bf16_to_f32(0xff80), f32::NEG_INFINITY);
}

#[test]
fn file_round_trip_reads_and_uploads_exactly() {
    let (raws, want) = sample(true);
    let f = TempFile::new("round_trip");
    let views: Vec<(&str, TensorView<'_>)> = raws
        .iter()
        .map(|t| {
            let v = TensorView::new(t.dtype, t.shape.clone(), &t.bytes).expect("view");
            (t.name, v)
        })
        .collect();
    safetensors::serialize_to_file(views, Some(meta()), f.path()).expect("serialize_to_file");
    let w = Weights::open(f.path()).expect("open");
    assert_eq!(w.path(), f.path());
    check_round_trip(&w, &raws, &want, true);
}

#[test]
fn static_round_trip_reads_and_uploads_exactly() {
    let (raws, want) = sample(false);
    let w = Weights::from_static(leak(serialize(&raws, Some(meta())))).expect("from_static");
    check_round_trip(&w, &raws, &want, true);
}

#[test]
fn no_metadata_and_empty_tensors_are_fine() {
    let raws = [
        Raw {
            name: "empty",
            dtype: Dtype::F32,
            shape: vec![0, 3],
            bytes: vec![],
        },
        Raw {
            name: "scalar",
            dtype: Dtype::F32,
            shape: vec![],
            bytes: f32_bytes(&[2.5]),
        },
    ];
    let w = Weights::from_static(leak(serialize(&raws, None))).expect("from_static");
    assert_eq!(w.metadata(), None);
    assert_eq!(w.read_f32("empty").unwrap(), Vec::<f32>::new());
    assert_eq!(w.read_f32("scalar").unwrap(), vec![2.5]);
    let t = w.upload(ctx(), "scalar", &[]).expect("upload scalar");
    assert_eq!(t.download(ctx()).unwrap(), vec![2.5]);
    w.upload(ctx(), "empty", &[0, 3]).expect("upload empty");
}

#[test]
fn write_at_writes_a_window_and_rejects_overruns() {
    let c = ctx();
    let t = Tensor::from_slice(c, &[3, 4], &[0.0; 12]).unwrap();
    t.write_at(c, 5, &[1.0, 2.0, 3.0]).unwrap();
    t.write_at(c, 12, &[]).unwrap();
    let mut want = vec![0.0; 12];
    want[5..8].copy_from_slice(&[1.0, 2.0, 3.0]);
    assert_eq!(t.download(c).unwrap(), want);
    let e = t.write_at(c, 10, &[1.0; 3]).unwrap_err().to_string();
    assert!(e.contains("[3, 4]") && e.contains("10"), "{e}");
    assert!(t.write_at(c, usize::MAX, &[1.0]).is_err());
}

fn two_tensor_file() -> Weights {
    let raws = [
        Raw {
            name: "a",
            dtype: Dtype::F32,
            shape: vec![3, 5, 7],
            bytes: vec![0; 3 * 5 * 7 * 4],
        },
        Raw {
            name: "b",
            dtype: Dtype::F16,
            shape: vec![2],
            bytes: vec![0; 4],
        },
    ];
    Weights::from_static(leak(serialize(&raws, None))).expect("from_static")
}

#[test]
fn missing_tensor_is_named() {
    let w = two_tensor_file();
    match w.check_names(&["a", "b", "conv9.weight"]) {
        Err(e @ ModelError::MissingTensor { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("conv9.weight") && m.contains("<embedded>"),
                "{m}"
            );
        }
        other => panic!("expected MissingTensor, got {other:?}"),
    }
    match w.read_f32("nope") {
        Err(e @ ModelError::MissingTensor { .. }) => assert!(e.to_string().contains("`nope`")),
        other => panic!("expected MissingTensor, got {other:?}"),
    }
    assert!(w.info("nope").is_none());
}

#[test]
fn unexpected_tensor_is_named() {
    let w = two_tensor_file();
    match w.check_names(&["a"]) {
        Err(e @ ModelError::UnexpectedTensor { .. }) => {
            assert!(e.to_string().contains("`b`"), "{e}");
        }
        other => panic!("expected UnexpectedTensor, got {other:?}"),
    }
}

#[test]
fn upload_shape_mismatch_names_both_shapes() {
    let w = two_tensor_file();
    match w.upload(ctx(), "a", &[3, 5, 8]) {
        Err(cnnvis::Error::Model(e @ ModelError::ShapeMismatch { .. })) => {
            let m = e.to_string();
            assert!(
                m.contains("`a`") && m.contains("[3, 5, 7]") && m.contains("[3, 5, 8]"),
                "{m}"
            );
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
}

#[test]
fn unsupported_dtype_is_named() {
    let raws = [Raw {
        name: "steps",
        dtype: Dtype::I64,
        shape: vec![3],
        bytes: vec![1; 24],
    }];
    let f = TempFile::write("dtype", &serialize(&raws, None));
    let w = Weights::open(f.path()).expect("open");
    assert_eq!(
        w.info("steps").unwrap().dtype,
        WeightDType::Other("I64".into())
    );
    match w.read_f32("steps") {
        Err(e @ ModelError::UnsupportedDtype { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("`steps`") && m.contains("I64") && m.contains(&f.name()),
                "{m}"
            );
        }
        other => panic!("expected UnsupportedDtype, got {other:?}"),
    }
    assert!(matches!(
        w.upload(ctx(), "steps", &[3]),
        Err(cnnvis::Error::Model(ModelError::UnsupportedDtype { .. }))
    ));
}

#[test]
fn nonexistent_file_is_io_error_naming_the_path() {
    let f = TempFile::new("does_not_exist");
    match Weights::open(f.path()) {
        Err(e @ ModelError::Io { .. }) => assert!(e.to_string().contains(&f.name()), "{e}"),
        other => panic!("expected Io, got {other:?}"),
    }
}

fn expect_corrupt(test: &str, bytes: &[u8], needles: &[&str]) {
    let f = TempFile::write(test, bytes);
    match Weights::open(f.path()) {
        Err(e @ ModelError::Corrupt { .. }) => {
            let m = e.to_string();
            assert!(m.contains(&f.name()), "{test}: {m}");
            for n in needles {
                assert!(m.contains(n), "{test}: `{n}` not in: {m}");
            }
        }
        other => panic!("{test}: expected Corrupt, got {other:?}"),
    }
}

fn with_header(header: &str, data_len: usize) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend(header.as_bytes());
    v.extend(std::iter::repeat_n(0u8, data_len));
    v
}

#[test]
fn corrupt_files_are_reported_with_offsets() {
    expect_corrupt("garbage", &with_header("not json!!", 0), &["header"]);
    expect_corrupt("zero_bytes", &[], &["0 bytes", "offset 0"]);
    expect_corrupt("seven_bytes", &[1, 2, 3, 4, 5, 6, 7], &["7 bytes"]);
    let mut big = 1000u64.to_le_bytes().to_vec();
    big.extend([b' '; 12]);
    expect_corrupt("header_too_long", &big, &["1000", "offset 0", "20-byte"]);
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend(b"{}");
    expect_corrupt("header_u64_max", &huge, &["offset 0"]);
    let overlap = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    expect_corrupt("overlap", &with_header(overlap, 12), &["`b`"]);
    let gap = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    expect_corrupt("gap", &with_header(gap, 12), &["`a`"]);
    let wrong_size = r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
    expect_corrupt("wrong_size", &with_header(wrong_size, 8), &["shape"]);
    let bad_dtype = r#"{"a":{"dtype":"F99","shape":[2],"data_offsets":[0,8]}}"#;
    expect_corrupt("bad_dtype", &with_header(bad_dtype, 8), &["header"]);
    let ok = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    expect_corrupt(
        "trailing",
        &with_header(ok, 11),
        &["3 unexpected trailing bytes"],
    );
    assert!(Weights::from_static(leak(with_header(ok, 8))).is_ok());
}

#[test]
fn every_cut_in_the_data_section_is_truncated() {
    let full = small_file();
    let header_end = 8 + u64::from_le_bytes(full[..8].try_into().unwrap()) as usize;
    // One real file through open(); the rest through the same parser in memory.
    let f = TempFile::write("truncated", &full[..full.len() - 3]);
    match Weights::open(f.path()) {
        Err(e @ ModelError::Truncated { .. }) => {
            let m = e.to_string();
            let (want, got) = (full.len().to_string(), (full.len() - 3).to_string());
            assert!(
                m.contains(&f.name()) && m.contains(&want) && m.contains(&got),
                "{m}"
            );
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    for cut in header_end..full.len() {
        match Weights::from_static(leak(full[..cut].to_vec())) {
            Err(ModelError::Truncated {
                expected_bytes,
                found_bytes,
                ..
            }) => {
                assert_eq!(
                    (expected_bytes, found_bytes),
                    (full.len() as u64, cut as u64)
                );
            }
            other => panic!("cut at {cut}: expected Truncated, got {other:?}"),
        }
    }
}

/// Opens `bytes` and, if it parses, exercises every accessor; only panics are failures.
fn poke(bytes: Vec<u8>) -> bool {
    match Weights::from_static(leak(bytes)) {
        Ok(w) => {
            let names: Vec<String> = w.names().iter().map(|s| s.to_string()).collect();
            for n in &names {
                let _ = w.info(n);
                let _ = w.read_f32(n);
            }
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let _ = w.check_names(&refs);
            let _ = w.metadata();
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

/// A small valid file with all three float dtypes and metadata.
fn small_file() -> Vec<u8> {
    let raws = [
        Raw {
            name: "w",
            dtype: Dtype::F32,
            shape: vec![2, 3],
            bytes: f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        },
        Raw {
            name: "h",
            dtype: Dtype::F16,
            shape: vec![3],
            bytes: u16_bytes(&[0x3c00, 0x7c00, 0x0001]),
        },
        Raw {
            name: "b",
            dtype: Dtype::BF16,
            shape: vec![1, 2],
            bytes: u16_bytes(&[0x3f80, 0xc000]),
        },
    ];
    serialize(&raws, Some(meta()))
}

#[test]
fn fuzzed_files_never_panic() {
    let full = small_file();
    for cut in 0..full.len() {
        assert!(
            !poke(full[..cut].to_vec()),
            "a {cut}-byte prefix of a {}-byte file parsed",
            full.len()
        );
    }
    assert!(poke(full.clone()));
    let mut rng = Rng::new(11);
    let mut parsed = 0;
    for _ in 0..400 {
        let mut bytes = full.clone();
        for _ in 0..rng.int(1, 3) {
            let i = rng.int(0, bytes.len() - 1);
            bytes[i] ^= 1 << rng.int(0, 7);
        }
        parsed += poke(bytes) as usize;
    }
    // Flips in the data section keep the file valid: the loop did reach the read paths.
    assert!(parsed > 0);
}
