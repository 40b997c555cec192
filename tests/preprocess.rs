//! Image preprocessing: half-pixel bilinear resize against an f64 reference and PyTorch's
//! documented output, channel conversion, normalization, batching, upload, and errors.

mod common;
use common::*;

use cnnvis::model::preprocess::{decode_image, load_image, ChannelMode, InputError, Preprocess};
use image::{DynamicImage, GrayImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

/// Independent reference of PyTorch's bilinear (align_corners=False, antialias=False) on one
/// `[ih, iw]` plane, evaluated per output pixel in f64.
fn bilinear_ref(x: &[f64], ih: usize, iw: usize, oh: usize, ow: usize) -> Vec<f64> {
    let src = |d: usize, inp: usize, out: usize| -> (usize, usize, f64) {
        let s = ((d as f64 + 0.5) * (inp as f64 / out as f64) - 0.5).max(0.0);
        let i0 = s.floor() as usize;
        let i1 = if i0 + 1 < inp { i0 + 1 } else { i0 };
        (i0, i1, s - i0 as f64)
    };
    let mut out = Vec::new();
    for oy in 0..oh {
        let (y0, y1, ly) = src(oy, ih, oh);
        for ox in 0..ow {
            let (x0, x1, lx) = src(ox, iw, ow);
            let at = |y: usize, xx: usize| x[y * iw + xx];
            out.push(
                (1.0 - ly) * ((1.0 - lx) * at(y0, x0) + lx * at(y0, x1))
                    + ly * ((1.0 - lx) * at(y1, x0) + lx * at(y1, x1)),
            );
        }
    }
    out
}

fn random_rgb(rng: &mut Rng, w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |_, _| {
        Rgb([
            rng.int(0, 255) as u8,
            rng.int(0, 255) as u8,
            rng.int(0, 255) as u8,
        ])
    })
}

/// Planes of `img` as f64 in [0, 1], CHW.
fn planes(img: &RgbImage) -> Vec<Vec<f64>> {
    (0..3)
        .map(|c| img.pixels().map(|p| p.0[c] as f64 / 255.0).collect())
        .collect()
}

fn png_bytes(img: &DynamicImage) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, ImageFormat::Png)
        .expect("encode png");
    buf.into_inner()
}

fn no_norm(h: usize, w: usize) -> Preprocess {
    Preprocess::imagenet()
        .with_size(h, w)
        .with_mean_std(vec![0.0; 3], vec![1.0; 3])
}

#[test]
fn resize_matches_cpu_reference() {
    let mut rng = Rng::new(7);
    // (in_h, in_w, out_h, out_w): downscale, upscale, non-square, 1×1 input, one axis kept.
    let cases = [
        (23, 37, 11, 16),
        (4, 5, 9, 13),
        (6, 17, 10, 3),
        (1, 1, 4, 3),
        (9, 8, 9, 5),
        (7, 6, 12, 6),
    ];
    for (ih, iw, oh, ow) in cases {
        let img = random_rgb(&mut rng, iw as u32, ih as u32);
        let got = no_norm(oh, ow)
            .to_chw(&DynamicImage::ImageRgb8(img.clone()))
            .expect("to_chw");
        assert_eq!(got.len(), 3 * oh * ow);
        let want: Vec<f64> = planes(&img)
            .iter()
            .flat_map(|p| bilinear_ref(p, ih, iw, oh, ow))
            .collect();
        assert_close(&format!("{ih}x{iw} -> {oh}x{ow}"), &got, &want, 1e-6, 1e-6);
    }
}

#[test]
fn resize_2x2_to_4x4_matches_pytorch_documented_output() {
    let img = GrayImage::from_raw(2, 2, vec![1, 2, 3, 4]).expect("image");
    let mut pp = Preprocess::grayscale(4, 4);
    pp.scale = 1.0;
    let got = pp.to_chw(&DynamicImage::ImageLuma8(img)).expect("to_chw");
    // torch.nn.functional.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)
    let want = [
        1.0, 1.25, 1.75, 2.0, //
        1.5, 1.75, 2.25, 2.5, //
        2.5, 2.75, 3.25, 3.5, //
        3.0, 3.25, 3.75, 4.0,
    ];
    assert_eq!(got, want);
}

#[test]
fn same_size_is_exact_pass_through() {
    let mut rng = Rng::new(3);
    let img = random_rgb(&mut rng, 6, 5);
    let pp = Preprocess::imagenet().with_size(5, 6);
    let got = pp
        .to_chw(&DynamicImage::ImageRgb8(img.clone()))
        .expect("to_chw");
    let mut want = vec![0f32; 3 * 30];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            let v = p.0[c] as f32 * pp.scale;
            want[c * 30 + y as usize * 6 + x as usize] = (v - pp.mean[c]) / pp.std[c];
        }
    }
    assert_eq!(got, want, "same-size input must not be resampled");
}

#[test]
fn imagenet_normalization_matches_cpu_reference() {
    let mut rng = Rng::new(11);
    let img = random_rgb(&mut rng, 9, 7);
    let pp = Preprocess::imagenet().with_size(4, 5);
    assert_eq!(pp.channels, ChannelMode::Rgb);
    let got = pp
        .to_chw(&DynamicImage::ImageRgb8(img.clone()))
        .expect("to_chw");
    let (mean, std) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
    let want: Vec<f64> = planes(&img)
        .iter()
        .enumerate()
        .flat_map(|(c, p)| {
            bilinear_ref(p, 7, 9, 4, 5)
                .into_iter()
                .map(move |v| (v - mean[c]) / std[c])
        })
        .collect();
    assert_close("imagenet normalization", &got, &want, 1e-5, 1e-5);
    assert_eq!(Preprocess::imagenet().size, [224, 224]);
}

#[test]
fn rgba_drops_alpha() {
    let mut rng = Rng::new(5);
    let rgba = RgbaImage::from_fn(4, 3, |_, _| {
        Rgba([
            rng.int(0, 255) as u8,
            rng.int(0, 255) as u8,
            rng.int(0, 255) as u8,
            rng.int(0, 255) as u8,
        ])
    });
    let rgb = RgbImage::from_fn(4, 3, |x, y| {
        let p = rgba.get_pixel(x, y).0;
        Rgb([p[0], p[1], p[2]])
    });
    let pp = no_norm(3, 4);
    let a = pp.to_chw(&DynamicImage::ImageRgba8(rgba)).expect("rgba");
    let b = pp.to_chw(&DynamicImage::ImageRgb8(rgb)).expect("rgb");
    assert_eq!(a, b);
}

#[test]
fn gray_image_replicates_into_rgb() {
    let gray = GrayImage::from_fn(5, 3, |x, y| image::Luma([(x * 40 + y * 7) as u8]));
    let pp = no_norm(3, 5);
    let got = pp
        .to_chw(&DynamicImage::ImageLuma8(gray.clone()))
        .expect("to_chw");
    let plane: Vec<f32> = gray.pixels().map(|p| p.0[0] as f32 * pp.scale).collect();
    for c in 0..3 {
        assert_eq!(&got[c * 15..(c + 1) * 15], &plane[..], "channel {c}");
    }
}

#[test]
fn rgb_image_to_grayscale_uses_image_crate_luma() {
    let mut rng = Rng::new(9);
    let img = DynamicImage::ImageRgb8(random_rgb(&mut rng, 7, 4));
    let pp = Preprocess::grayscale(4, 7);
    let got = pp.to_chw(&img).expect("to_chw");
    let want: Vec<f32> = img
        .to_luma8()
        .pixels()
        .map(|p| p.0[0] as f32 * pp.scale)
        .collect();
    assert_eq!(got, want);
}

#[test]
fn batch_is_nchw_and_upload_round_trips() {
    let mut rng = Rng::new(13);
    let imgs: Vec<DynamicImage> = [(5u32, 4u32), (3, 6), (8, 8)]
        .iter()
        .map(|&(w, h)| DynamicImage::ImageRgb8(random_rgb(&mut rng, w, h)))
        .collect();
    let pp = Preprocess::imagenet().with_size(3, 4);
    let (data, shape) = pp.batch(&imgs).expect("batch");
    assert_eq!(shape, [3, 3, 3, 4]);
    assert_eq!(data.len(), 3 * 3 * 12);
    for (n, img) in imgs.iter().enumerate() {
        let one = pp.to_chw(img).expect("to_chw");
        assert_eq!(&data[n * 36..(n + 1) * 36], &one[..], "image {n}");
    }
    let t = pp.upload(ctx(), &imgs).expect("upload");
    assert_eq!(t.shape(), &[3, 3, 3, 4]);
    assert_eq!(download(&t), data);
}

#[test]
fn png_decode_and_load_round_trip() {
    let mut rng = Rng::new(17);
    let img = DynamicImage::ImageRgb8(random_rgb(&mut rng, 6, 5));
    let bytes = png_bytes(&img);
    let decoded = decode_image(&bytes).expect("decode");
    assert_eq!(decoded.to_rgb8(), img.to_rgb8());

    let path = std::env::temp_dir().join(format!(
        "cnnvis_preprocess_{}_{:x}.img",
        std::process::id(),
        rng.next_u64()
    ));
    std::fs::write(&path, &bytes).expect("write temp file");
    let loaded = load_image(&path);
    std::fs::remove_file(&path).expect("remove temp file");
    assert_eq!(loaded.expect("load").to_rgb8(), img.to_rgb8());
}

#[test]
fn garbage_bytes_give_decode_error() {
    let err = decode_image(b"definitely not an image").unwrap_err();
    assert!(
        matches!(err, InputError::Decode { path: None, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("decode"), "{err}");
    let err = decode_image(&[]).unwrap_err();
    assert!(matches!(err, InputError::Decode { .. }), "{err:?}");
}

#[test]
fn missing_file_gives_io_error() {
    let path = std::env::temp_dir().join(format!(
        "cnnvis_preprocess_missing_{}_{}.png",
        std::process::id(),
        line!()
    ));
    let err = load_image(&path).unwrap_err();
    assert!(matches!(err, InputError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains("cnnvis_preprocess_missing"),
        "{err}"
    );
    let err: cnnvis::Error = err.into();
    assert!(matches!(err, cnnvis::Error::Input(InputError::Io { .. })));
}

#[test]
fn zero_size_image_is_refused() {
    let pp = Preprocess::imagenet();
    for img in [RgbImage::new(0, 5), RgbImage::new(5, 0)] {
        let err = pp.to_chw(&DynamicImage::ImageRgb8(img)).unwrap_err();
        assert!(matches!(err, InputError::ZeroSize { .. }), "{err:?}");
    }
}

#[test]
fn bad_settings_are_refused() {
    let img = DynamicImage::ImageRgb8(RgbImage::new(4, 4));
    let bad = [
        Preprocess::imagenet().with_mean_std(vec![0.5; 2], vec![0.2; 3]),
        Preprocess::imagenet().with_mean_std(vec![0.5; 3], vec![0.2; 1]),
        Preprocess::imagenet().with_mean_std(vec![0.5; 3], vec![0.2, 0.0, 0.2]),
        Preprocess::imagenet().with_mean_std(vec![0.5; 3], vec![0.2, -1.0, 0.2]),
        Preprocess::imagenet().with_mean_std(vec![f32::NAN; 3], vec![0.2; 3]),
        Preprocess::grayscale(4, 4).with_mean_std(vec![0.5; 3], vec![0.2; 3]),
        Preprocess::imagenet().with_size(0, 4),
        Preprocess::imagenet().with_size(4, 0),
        Preprocess {
            scale: 0.0,
            ..Preprocess::imagenet()
        },
    ];
    for pp in bad {
        let err = pp.to_chw(&img).unwrap_err();
        assert!(
            matches!(err, InputError::BadPreprocess { .. }),
            "{pp:?}: {err:?}"
        );
        assert!(pp.batch(std::slice::from_ref(&img)).is_err());
    }
}

#[test]
fn empty_batch_is_refused() {
    let pp = Preprocess::imagenet();
    assert!(matches!(pp.batch(&[]).unwrap_err(), InputError::EmptyBatch));
    let err = pp.upload(ctx(), &[]).unwrap_err();
    assert!(
        matches!(err, cnnvis::Error::Input(InputError::EmptyBatch)),
        "{err:?}"
    );
}

#[test]
fn truncated_png_never_panics() {
    let mut rng = Rng::new(21);
    let img = DynamicImage::ImageRgba8(RgbaImage::from_fn(9, 7, |_, _| {
        Rgba([rng.int(0, 255) as u8, 1, 2, rng.int(0, 255) as u8])
    }));
    let bytes = png_bytes(&img);
    for n in 0..bytes.len() {
        // Either an error or (for a prefix the decoder tolerates) an image; never a panic.
        if let Ok(decoded) = decode_image(&bytes[..n]) {
            let _ = Preprocess::imagenet().with_size(3, 3).to_chw(&decoded);
        }
    }
    // Corrupting single bytes must not panic either.
    for i in (0..bytes.len()).step_by(3) {
        let mut b = bytes.clone();
        b[i] ^= 0xA5;
        let _ = decode_image(&b);
    }
    assert!(decode_image(&bytes).is_ok());
}
