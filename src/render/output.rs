//! CPU side of rendering: downloaded maps as `image` buffers, keras-vis's grid stitcher with
//! optional labels, PNG/JPEG/GIF files chosen by extension, and animated GIFs.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use image::codecs::gif::{GifEncoder, Repeat};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{Delay, DynamicImage, Frame, ImageEncoder, ImageError, Rgb, RgbImage, RgbaImage};

use crate::error::{Error, Result};
use crate::gpu::{GpuContext, Tensor};
use crate::render::font::{draw_text, text_height, text_width, ADVANCE};
use crate::render::RenderError;

/// JPEG quality of [`save_image`] (the `image` crate's default is 75).
pub const JPEG_QUALITY: u8 = 95;

/// NeuQuant speed of the GIF palette quantizer (1 best and slowest, 30 fastest).
pub const GIF_SPEED: i32 = 10;

/// `[N, H, W]` (or `[H, W]`, one image) of packed-pixel data of length `len`.
fn nhw(op: &'static str, shape: &[usize], per_pixel: usize, len: usize) -> Result<[usize; 3]> {
    let dims = match *shape {
        [n, h, w] => [n, h, w],
        [h, w] => [1, h, w],
        _ => {
            return Err(Error::shape(
                op,
                format!("shape {shape:?}, expected [N, H, W]"),
            ))
        }
    };
    let [n, h, w] = dims;
    if n * h * w * per_pixel != len {
        return Err(Error::shape(
            op,
            format!("{len} values for shape {shape:?}"),
        ));
    }
    if h > u32::MAX as usize || w > u32::MAX as usize {
        return Err(Error::shape(op, format!("image size {h}x{w} exceeds u32")));
    }
    Ok(dims)
}

/// Packed RGBA8 pixels (u32, R in the low byte) of shape `[N, H, W]` (or `[H, W]`) as `N`
/// images.
pub fn rgba_images(data: &[u32], shape: &[usize]) -> Result<Vec<RgbaImage>> {
    let [n, h, w] = nhw("rgba_images", shape, 1, data.len())?;
    let plane = h * w;
    Ok((0..n)
        .map(|i| {
            let bytes: Vec<u8> = data[i * plane..(i + 1) * plane]
                .iter()
                .flat_map(|p| p.to_le_bytes())
                .collect();
            RgbaImage::from_raw(w as u32, h as u32, bytes)
                .unwrap_or_else(|| unreachable!("length checked"))
        })
        .collect())
}

/// f32 RGB planes `[N, 3, H, W]` (or `[3, H, W]`) in [0, 1] as `N` images; each value becomes
/// `round(255 * clamp(v, 0, 1))`, so [`super::colormap_rgb`]'s `byte / 255` gives its byte back.
pub fn rgb_images(data: &[f32], shape: &[usize]) -> Result<Vec<RgbImage>> {
    const OP: &str = "rgb_images";
    let (n, h, w) = match *shape {
        [n, 3, h, w] => (n, h, w),
        [3, h, w] => (1, h, w),
        _ => {
            return Err(Error::shape(
                OP,
                format!("shape {shape:?}, expected [N, 3, H, W]"),
            ))
        }
    };
    nhw(OP, &[n, h, w], 3, data.len())?;
    let plane = h * w;
    Ok(data
        .chunks_exact(3 * plane)
        .map(|img| {
            let mut out = RgbImage::new(w as u32, h as u32);
            for (p, px) in out.pixels_mut().enumerate() {
                for c in 0..3 {
                    px.0[c] = (img[c * plane + p].clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
            out
        })
        .collect())
}

/// Downloads a packed RGBA8 tensor (u32 `[N, H, W]`) as `N` images.
pub fn download_rgba(ctx: &GpuContext, rgba: &Tensor) -> Result<Vec<RgbaImage>> {
    rgba_images(&rgba.download_u32(ctx)?, rgba.shape())
}

/// Downloads an f32 RGB tensor (`[N, 3, H, W]` in [0, 1]) as `N` images (see [`rgb_images`]).
pub fn download_rgb(ctx: &GpuContext, rgb: &Tensor) -> Result<Vec<RgbImage>> {
    rgb_images(&rgb.download(ctx)?, rgb.shape())
}

/// A grid of equally sized images: keras-vis's `stitch_images` layout, with optional labels.
///
/// Without labels, `n` tiles of `w × h` fill `ceil(n / cols)` rows of `min(n, cols)` columns,
/// tile `i` at `((w + margin) * (i % cols), (h + margin) * (i / cols))`, on a
/// `cols·w + (cols-1)·margin` by `rows·h + (rows-1)·margin` canvas of `background`. With labels,
/// each tile gets a strip of [`Grid::label_height`] pixels below it, where its label is drawn
/// centred (and cut to the tile's width) in the built-in 5×7 font.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// Pixels between tiles (keras-vis: 5).
    pub margin: u32,
    /// Tiles per row (keras-vis: 5).
    pub cols: usize,
    /// Canvas colour (keras-vis: black).
    pub background: Rgb<u8>,
    /// Label text colour.
    pub label_color: Rgb<u8>,
    /// Size of a font pixel in image pixels.
    pub label_scale: u32,
}

impl Default for Grid {
    fn default() -> Self {
        Grid {
            margin: 5,
            cols: 5,
            background: Rgb([0, 0, 0]),
            label_color: Rgb([255, 255, 255]),
            label_scale: 1,
        }
    }
}

/// Where [`Grid`] puts its tiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridLayout {
    /// Canvas width.
    pub width: u32,
    /// Canvas height.
    pub height: u32,
    /// Rows of tiles.
    pub rows: usize,
    /// Columns of tiles.
    pub cols: usize,
    /// Top-left corner of each tile image.
    pub origins: Vec<(u32, u32)>,
    /// Top of each tile's label strip (empty without labels).
    pub label_tops: Vec<u32>,
}

impl Grid {
    /// Height of the label strip under each tile: the font's 7 rows plus one font pixel above
    /// and below.
    pub fn label_height(&self) -> u32 {
        text_height(self.label_scale.max(1)) + 2 * self.label_scale.max(1)
    }

    /// The layout of `count` tiles of `tile` = `(width, height)`, with or without labels.
    pub fn layout(&self, count: usize, tile: (u32, u32), labeled: bool) -> Result<GridLayout> {
        const OP: &str = "stitch_images";
        if count == 0 {
            return Err(Error::shape(OP, "no images to stitch"));
        }
        if self.cols == 0 {
            return Err(Error::shape(OP, "cols must be at least 1"));
        }
        let (w, h) = (tile.0 as u64, tile.1 as u64);
        let label = if labeled {
            self.label_height() as u64
        } else {
            0
        };
        let cell_h = h + label;
        let rows = count.div_ceil(self.cols);
        let cols = count.min(self.cols);
        let m = self.margin as u64;
        let width = cols as u64 * w + (cols as u64 - 1) * m;
        let height = rows as u64 * cell_h + (rows as u64 - 1) * m;
        let too_big = |v: u64| {
            u32::try_from(v)
                .map_err(|_| Error::shape(OP, format!("a grid of {count} tiles is too large")))
        };
        let (width, height) = (too_big(width)?, too_big(height)?);
        let origins: Vec<(u32, u32)> = (0..count)
            .map(|i| {
                let (r, c) = ((i / self.cols) as u64, (i % self.cols) as u64);
                (((w + m) * c) as u32, ((cell_h + m) * r) as u32)
            })
            .collect();
        let label_tops = if labeled {
            origins.iter().map(|&(_, y)| y + h as u32).collect()
        } else {
            Vec::new()
        };
        Ok(GridLayout {
            width,
            height,
            rows,
            cols,
            origins,
            label_tops,
        })
    }

    /// Stitches `images` (all one size) into a grid.
    pub fn stitch(&self, images: &[RgbImage]) -> Result<RgbImage> {
        self.stitch_inner(images, None)
    }

    /// Stitches `images` with one label each, drawn under its tile.
    pub fn stitch_labeled<S: AsRef<str>>(
        &self,
        images: &[RgbImage],
        labels: &[S],
    ) -> Result<RgbImage> {
        if labels.len() != images.len() {
            return Err(Error::shape(
                "stitch_images",
                format!("{} labels for {} images", labels.len(), images.len()),
            ));
        }
        let labels: Vec<&str> = labels.iter().map(AsRef::as_ref).collect();
        self.stitch_inner(images, Some(&labels))
    }

    fn stitch_inner(&self, images: &[RgbImage], labels: Option<&[&str]>) -> Result<RgbImage> {
        let Some(first) = images.first() else {
            return Err(Error::shape("stitch_images", "no images to stitch"));
        };
        let tile = first.dimensions();
        if let Some((i, img)) = images
            .iter()
            .enumerate()
            .find(|(_, img)| img.dimensions() != tile)
        {
            return Err(Error::shape(
                "stitch_images",
                format!(
                    "image {i} is {}x{} but image 0 is {}x{}",
                    img.width(),
                    img.height(),
                    tile.0,
                    tile.1
                ),
            ));
        }
        let layout = self.layout(images.len(), tile, labels.is_some())?;
        let mut canvas = RgbImage::from_pixel(layout.width, layout.height, self.background);
        for (img, &(x, y)) in images.iter().zip(&layout.origins) {
            image::imageops::replace(&mut canvas, img, x as i64, y as i64);
        }
        if let Some(labels) = labels {
            let s = self.label_scale.max(1);
            let max_chars = ((tile.0 / s + 1) / ADVANCE) as usize;
            for (i, label) in labels.iter().enumerate() {
                let text: String = label.chars().take(max_chars).collect();
                let (x, _) = layout.origins[i];
                let tw = text_width(&text, s);
                let tx = x as i64 + (tile.0.saturating_sub(tw) / 2) as i64;
                let ty = layout.label_tops[i] as i64 + s as i64;
                draw_text(&mut canvas, &text, tx, ty, s, self.label_color);
            }
        }
        Ok(canvas)
    }
}

/// keras-vis's `utils.stitch_images(images, margin, cols)`: a black-background grid.
pub fn stitch_images(images: &[RgbImage], margin: u32, cols: usize) -> Result<RgbImage> {
    Grid {
        margin,
        cols,
        ..Grid::default()
    }
    .stitch(images)
}

/// The file formats we write, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Png,
    Jpeg,
    Gif,
}

const IMAGE_EXTENSIONS: &str = "png, jpg, jpeg, gif";

fn format_of(
    path: &Path,
    allowed: &[Format],
    expected: &'static str,
) -> std::result::Result<Format, RenderError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let format = match ext.as_deref() {
        Some("png") => Some(Format::Png),
        Some("jpg" | "jpeg") => Some(Format::Jpeg),
        Some("gif") => Some(Format::Gif),
        _ => None,
    };
    match format {
        Some(f) if allowed.contains(&f) => Ok(f),
        _ => Err(RenderError::UnknownExtension {
            path: path.to_path_buf(),
            ext: path.extension().map(|e| e.to_string_lossy().into_owned()),
            expected,
        }),
    }
}

fn create(path: &Path) -> std::result::Result<BufWriter<File>, RenderError> {
    File::create(path)
        .map(BufWriter::new)
        .map_err(|source| RenderError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn image_err(path: &Path, e: ImageError) -> RenderError {
    match e {
        ImageError::IoError(source) => RenderError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => RenderError::Encode {
            path: path.to_path_buf(),
            detail: other.to_string(),
        },
    }
}

fn flush(path: &Path, mut w: impl Write) -> std::result::Result<(), RenderError> {
    w.flush().map_err(|source| RenderError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `img` to `path` in the format its extension names (case-insensitive): `.png`,
/// `.jpg`/`.jpeg` (quality [`JPEG_QUALITY`]; alpha dropped), or `.gif` (one frame). Any other
/// extension is a [`RenderError::UnknownExtension`] and creates no file.
pub fn save_image(
    path: impl AsRef<Path>,
    img: &DynamicImage,
) -> std::result::Result<(), RenderError> {
    let path = path.as_ref();
    let format = format_of(
        path,
        &[Format::Png, Format::Jpeg, Format::Gif],
        IMAGE_EXTENSIONS,
    )?;
    if img.width() == 0 || img.height() == 0 {
        return Err(RenderError::BadImage {
            path: path.to_path_buf(),
            detail: "the image has no pixels".into(),
        });
    }
    let mut w = create(path)?;
    match format {
        Format::Png => {
            let img = match img {
                DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => img.clone(),
                other => DynamicImage::ImageRgba8(other.to_rgba8()),
            };
            img.write_with_encoder(PngEncoder::new(&mut w))
                .map_err(|e| image_err(path, e))?;
        }
        Format::Jpeg => {
            let rgb = img.to_rgb8();
            JpegEncoder::new_with_quality(&mut w, JPEG_QUALITY)
                .write_image(
                    rgb.as_raw(),
                    rgb.width(),
                    rgb.height(),
                    image::ExtendedColorType::Rgb8,
                )
                .map_err(|e| image_err(path, e))?;
        }
        Format::Gif => {
            let mut enc = GifEncoder::new_with_speed(&mut w, GIF_SPEED);
            enc.encode_frame(Frame::new(img.to_rgba8()))
                .map_err(|e| image_err(path, e))?;
        }
    }
    flush(path, w)
}

/// [`save_image`] for an RGB image.
pub fn save_rgb(path: impl AsRef<Path>, img: &RgbImage) -> std::result::Result<(), RenderError> {
    save_image(path, &DynamicImage::ImageRgb8(img.clone()))
}

/// [`save_image`] for an RGBA image.
pub fn save_rgba(path: impl AsRef<Path>, img: &RgbaImage) -> std::result::Result<(), RenderError> {
    save_image(path, &DynamicImage::ImageRgba8(img.clone()))
}

/// An animated GIF written frame by frame, as keras-vis's `GifGenerator` records an
/// optimization (it appends one frame per iteration, captioned "Step i"; draw such captions
/// with [`super::font::draw_text`]). The animation loops forever; every frame shows for the
/// same delay. Frames must all have the first frame's size.
pub struct GifWriter {
    encoder: GifEncoder<CheckedFile>,
    error: Arc<Mutex<Option<std::io::Error>>>,
    path: PathBuf,
    delay: Delay,
    size: Option<(u32, u32)>,
    frames: usize,
}

impl std::fmt::Debug for GifWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GifWriter({}, {} frames)",
            self.path.display(),
            self.frames
        )
    }
}

impl GifWriter {
    /// Creates `path` (which must end in `.gif`) for frames shown `delay_ms` milliseconds each
    /// (GIF stores hundredths of a second).
    pub fn create(path: impl AsRef<Path>, delay_ms: u32) -> std::result::Result<Self, RenderError> {
        let path = path.as_ref();
        format_of(path, &[Format::Gif], "gif")?;
        let error = Arc::new(Mutex::new(None));
        let file = CheckedFile {
            inner: create(path)?,
            error: error.clone(),
        };
        let mut encoder = GifEncoder::new_with_speed(file, GIF_SPEED);
        encoder
            .set_repeat(Repeat::Infinite)
            .map_err(|e| image_err(path, e))?;
        Ok(GifWriter {
            encoder,
            error,
            path: path.to_path_buf(),
            delay: Delay::from_numer_denom_ms(delay_ms, 1),
            size: None,
            frames: 0,
        })
    }

    /// Appends an RGB frame.
    pub fn add_frame(&mut self, frame: &RgbImage) -> std::result::Result<(), RenderError> {
        self.add_rgba_frame(&DynamicImage::ImageRgb8(frame.clone()).to_rgba8())
    }

    /// Appends an RGBA frame.
    pub fn add_rgba_frame(&mut self, frame: &RgbaImage) -> std::result::Result<(), RenderError> {
        let dims = frame.dimensions();
        let bad = |detail: String| RenderError::BadImage {
            path: self.path.clone(),
            detail,
        };
        if dims.0 == 0 || dims.1 == 0 || dims.0 > u16::MAX as u32 || dims.1 > u16::MAX as u32 {
            return Err(bad(format!(
                "frame {} is {}x{}; GIF frames are 1 to 65535 pixels a side",
                self.frames, dims.0, dims.1
            )));
        }
        match self.size {
            Some(size) if size != dims => {
                return Err(bad(format!(
                    "frame {} is {}x{} but frame 0 is {}x{}",
                    self.frames, dims.0, dims.1, size.0, size.1
                )))
            }
            _ => self.size = Some(dims),
        }
        let frame = Frame::from_parts(frame.clone(), 0, 0, self.delay);
        self.encoder
            .encode_frame(frame)
            .map_err(|e| image_err(&self.path, e))?;
        self.frames += 1;
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Finishes the file; returns the number of frames. A GIF with no frames is an error (and
    /// the file is removed).
    pub fn finish(self) -> std::result::Result<usize, RenderError> {
        if self.frames == 0 {
            drop(self.encoder);
            let _ = std::fs::remove_file(&self.path);
            return Err(RenderError::BadImage {
                path: self.path,
                detail: "an animated GIF needs at least one frame".into(),
            });
        }
        // Dropping the encoder writes the GIF trailer, then the file flushes; both report
        // failures through the shared slot.
        drop(self.encoder);
        let failed = self.error.lock().unwrap_or_else(|p| p.into_inner()).take();
        match failed {
            Some(source) => Err(RenderError::Io {
                path: self.path,
                source,
            }),
            None => Ok(self.frames),
        }
    }
}

/// The GIF's file: the `gif` encoder writes its trailer when dropped and has no fallible
/// `finish`, so write and flush errors are kept here for [`GifWriter::finish`] to report.
struct CheckedFile {
    inner: BufWriter<File>,
    error: Arc<Mutex<Option<std::io::Error>>>,
}

impl CheckedFile {
    fn record<T>(&self, r: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &r {
            let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(std::io::Error::new(e.kind(), e.to_string()));
            }
        }
        r
    }
}

impl Write for CheckedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        self.record(r)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        self.record(r)
    }
}

impl Drop for CheckedFile {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Writes `frames` as an animated GIF at `path`, each shown `delay_ms` milliseconds, looping.
pub fn save_gif(
    path: impl AsRef<Path>,
    frames: &[RgbImage],
    delay_ms: u32,
) -> std::result::Result<(), RenderError> {
    let mut gif = GifWriter::create(path, delay_ms)?;
    for f in frames {
        gif.add_frame(f)?;
    }
    gif.finish().map(|_| ())
}
