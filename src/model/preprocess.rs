//! Image input for models: decode, convert channels, resize and normalize into NCHW f32.
//!
//! The resize is bilinear with half-pixel centres and no antialiasing, matching
//! `torch.nn.functional.interpolate(mode='bilinear', align_corners=False, antialias=False)`, so
//! inputs match what a PyTorch pipeline that resizes tensors would feed the network.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::DynamicImage;

use crate::gpu::context::GpuContext;
use crate::gpu::tensor::Tensor;

/// Errors from reading, decoding or preprocessing input images.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The image file could not be read.
    #[error("cannot read image file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes are not an image in a supported format (PNG, JPEG) or are corrupt.
    #[error("cannot decode image {}: {detail}", describe(path))]
    Decode {
        /// The file, when the bytes came from one.
        path: Option<PathBuf>,
        /// What the decoder reported.
        detail: String,
    },
    /// The image has no pixels.
    #[error("image is {width}x{height} pixels; both sides must be at least 1")]
    ZeroSize {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The image format cannot supply the channels the model needs.
    #[error("image has {found} channel(s) but the model needs {needed}")]
    TooFewChannels {
        /// Channels the image has.
        found: usize,
        /// Channels the model needs.
        needed: usize,
    },
    /// The preprocessing settings are invalid (mean/std length or values, size, scale).
    #[error("invalid preprocessing settings: {detail}")]
    BadPreprocess {
        /// What is wrong.
        detail: String,
    },
    /// A batch was requested from zero images.
    #[error("cannot build a batch from zero images")]
    EmptyBatch,
}

fn describe(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!("file {}", p.display()),
        None => "from memory".to_string(),
    }
}

/// Which channels the model consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelMode {
    /// Three channels, R, G, B in that order.
    Rgb,
    /// One luma channel.
    Grayscale,
}

impl ChannelMode {
    /// Number of channels.
    pub fn count(self) -> usize {
        match self {
            ChannelMode::Rgb => 3,
            ChannelMode::Grayscale => 1,
        }
    }
}

/// How an image becomes model input: `((pixel * scale) resized to size - mean[c]) / std[c]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    /// Output size `[height, width]`.
    pub size: [usize; 2],
    /// Channels the model consumes.
    pub channels: ChannelMode,
    /// Per-channel mean, subtracted after scaling.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation, divided by after subtracting the mean.
    pub std: Vec<f32>,
    /// Multiplier from 8-bit pixel values to floats (1/255 maps to [0, 1]).
    pub scale: f32,
}

impl Preprocess {
    /// torchvision's ImageNet convention: 224×224 RGB, ImageNet mean and std.
    pub fn imagenet() -> Self {
        Preprocess {
            size: [224, 224],
            channels: ChannelMode::Rgb,
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
            scale: 1.0 / 255.0,
        }
    }

    /// One-channel input of `h`×`w`, scaled to [0, 1] with no normalization.
    pub fn grayscale(h: usize, w: usize) -> Self {
        Preprocess {
            size: [h, w],
            channels: ChannelMode::Grayscale,
            mean: vec![0.0],
            std: vec![1.0],
            scale: 1.0 / 255.0,
        }
    }

    /// Sets the output size `[height, width]`.
    pub fn with_size(mut self, h: usize, w: usize) -> Self {
        self.size = [h, w];
        self
    }

    /// Sets the per-channel mean and standard deviation.
    pub fn with_mean_std(mut self, mean: Vec<f32>, std: Vec<f32>) -> Self {
        self.mean = mean;
        self.std = std;
        self
    }

    /// Checks the settings: sizes positive, one finite mean and one positive finite std per
    /// channel, finite positive scale.
    pub fn validate(&self) -> Result<(), InputError> {
        let bad = |detail: String| Err(InputError::BadPreprocess { detail });
        let c = self.channels.count();
        let [h, w] = self.size;
        if h == 0 || w == 0 {
            return bad(format!("output size {h}x{w} must be at least 1x1"));
        }
        if h.checked_mul(w).and_then(|n| n.checked_mul(c)).is_none() {
            return bad(format!("output size {h}x{w}x{c} overflows"));
        }
        if self.mean.len() != c || self.std.len() != c {
            return bad(format!(
                "{:?} input has {c} channel(s) but mean has {} and std has {} values",
                self.channels,
                self.mean.len(),
                self.std.len()
            ));
        }
        if let Some(m) = self.mean.iter().find(|m| !m.is_finite()) {
            return bad(format!("mean {m} is not finite"));
        }
        if let Some(s) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return bad(format!("std {s} must be finite and > 0"));
        }
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return bad(format!("scale {} must be finite and > 0", self.scale));
        }
        Ok(())
    }

    /// One image as CHW f32 (row-major): channel conversion, scaling, half-pixel bilinear
    /// resize (skipped when the size already matches), then per-channel normalization.
    pub fn to_chw(&self, img: &DynamicImage) -> Result<Vec<f32>, InputError> {
        self.validate()?;
        let (width, height) = (img.width(), img.height());
        if width == 0 || height == 0 {
            return Err(InputError::ZeroSize { width, height });
        }
        let (iw, ih) = (width as usize, height as usize);
        let c = self.channels.count();
        // to_rgb8 drops alpha and replicates luma; to_luma8 uses the image crate's
        // Rec. 709 weights. Either always yields the channels we need.
        let raw: Vec<u8> = match self.channels {
            ChannelMode::Rgb => img.to_rgb8().into_raw(),
            ChannelMode::Grayscale => img.to_luma8().into_raw(),
        };
        if raw.len() != iw * ih * c {
            return Err(InputError::TooFewChannels {
                found: raw.len() / (iw * ih),
                needed: c,
            });
        }
        let mut chw = vec![0f32; c * ih * iw];
        for (p, px) in raw.chunks_exact(c).enumerate() {
            for (ch, &v) in px.iter().enumerate() {
                chw[ch * ih * iw + p] = v as f32 * self.scale;
            }
        }
        let [oh, ow] = self.size;
        let mut out = if (oh, ow) == (ih, iw) {
            chw
        } else {
            resize_bilinear(&chw, c, [ih, iw], [oh, ow])
        };
        let plane = oh * ow;
        for (ch, data) in out.chunks_exact_mut(plane).enumerate() {
            let (m, s) = (self.mean[ch], self.std[ch]);
            for v in data {
                *v = (*v - m) / s;
            }
        }
        Ok(out)
    }

    /// Several images as one NCHW batch, with its shape `[N, C, H, W]`.
    pub fn batch(&self, imgs: &[DynamicImage]) -> Result<(Vec<f32>, [usize; 4]), InputError> {
        if imgs.is_empty() {
            return Err(InputError::EmptyBatch);
        }
        let [h, w] = self.size;
        let c = self.channels.count();
        let mut data = Vec::new();
        for img in imgs {
            data.extend(self.to_chw(img)?);
        }
        Ok((data, [imgs.len(), c, h, w]))
    }

    /// Preprocesses `imgs` and uploads them as an `[N, C, H, W]` tensor.
    pub fn upload(&self, ctx: &GpuContext, imgs: &[DynamicImage]) -> crate::Result<Tensor> {
        let (data, shape) = self.batch(imgs)?;
        Tensor::from_slice(ctx, &shape, &data)
    }
}

/// Source index pair and weight of the upper neighbour for each output coordinate, following
/// PyTorch's `area_pixel_compute_source_index` with align_corners=False: centres map by
/// `(dst + 0.5) * in / out - 0.5`, negatives clamp to 0 and the upper neighbour clamps to the
/// last row/column.
fn axis_weights(inp: usize, out: usize) -> Vec<(usize, usize, f64)> {
    let scale = inp as f64 / out as f64;
    (0..out)
        .map(|d| {
            let src = ((d as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(inp - 1);
            let i1 = (i0 + 1).min(inp - 1);
            (i0, i1, src - i0 as f64)
        })
        .collect()
}

/// Bilinear resize of `c` planes of `[ih, iw]` to `[oh, ow]`, in f64, without antialiasing.
fn resize_bilinear(src: &[f32], c: usize, [ih, iw]: [usize; 2], [oh, ow]: [usize; 2]) -> Vec<f32> {
    let ys = axis_weights(ih, oh);
    let xs = axis_weights(iw, ow);
    let mut out = Vec::with_capacity(c * oh * ow);
    for plane in src.chunks_exact(ih * iw) {
        for &(y0, y1, ly) in &ys {
            let (r0, r1) = (&plane[y0 * iw..][..iw], &plane[y1 * iw..][..iw]);
            for &(x0, x1, lx) in &xs {
                let top = (1.0 - lx) * r0[x0] as f64 + lx * r0[x1] as f64;
                let bot = (1.0 - lx) * r1[x0] as f64 + lx * r1[x1] as f64;
                out.push(((1.0 - ly) * top + ly * bot) as f32);
            }
        }
    }
    out
}

/// Decodes an image from memory; the format (PNG, JPEG) is guessed from the content.
pub fn decode_image(bytes: &[u8]) -> Result<DynamicImage, InputError> {
    decode(bytes, None)
}

/// Reads and decodes an image file; the format is guessed from the content, not the name.
pub fn load_image(path: impl AsRef<Path>) -> Result<DynamicImage, InputError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| InputError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode(&bytes, Some(path))
}

fn decode(bytes: &[u8], path: Option<&Path>) -> Result<DynamicImage, InputError> {
    let err = |detail: String| InputError::Decode {
        path: path.map(Path::to_path_buf),
        detail,
    };
    // ImageReader applies the image crate's default allocation limits, so a forged header
    // claiming a huge image is refused instead of exhausting memory.
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?;
    if reader.format().is_none() {
        return Err(err(
            "unrecognized image format (supported: PNG, JPEG)".into()
        ));
    }
    reader.decode().map_err(|e| err(e.to_string()))
}
