// render.wgsl: maps to colours for people. Colormap lookup (RGBA8 or f32 RGB), the overlay of a
// colormapped map on an image (pytorch-grad-cam's show_cam_on_image), and a row-padding copy for
// buffer-to-texture uploads.
// Layout: maps are [N, H, W] f32 in [0, 1]; images and f32 RGB outputs are [N, 3, H, W]; RGBA8
// outputs are one u32 per pixel [N, H, W], R in the low byte (bytes R, G, B, A in memory, the
// layout of an Rgba8Unorm texture row).
// Colormap index of a value x: min(u32(clamp(x, 0, 1) * p.levels), 255), truncating like
// `np.uint8(255 * mask)` (levels = 255, OpenCV's 8-bit input) or matplotlib's
// `floor(x * 256)` clamped to 255 (levels = 256).
// Bindings: 0 params, 1 map, 2 lut_rgba (256 packed RGBA8), 3 lut_rgb (256 x 3 f32 = byte/255),
// 4 out_u32 (packed RGBA8 output), 5 out_f32 (f32 RGB output), 6 image ([N or 1, 3, H, W] in
// [0, 1]), 7 cam (overlay scratch [N, 3, H, W]), 8 maxes ([N] per-image maximum of cam),
// 9 src_u32 (packed pixels to pad).
// One thread per pixel, except overlay_max: one workgroup per image, reduced in workgroup memory.

struct RenderParams {
    n: u32,          // threads: pixels N*H*W (pad_rows: H*W of one image)
    hw: u32,         // H*W
    levels: f32,     // index multiplier: 255 (OpenCV) or 256 (matplotlib)
    image_batch: u32, // images in `image`: 1 (shared by every map) or N
    heat_weight: f32, // 1 - image_weight, rounded to f32 as NumPy does
    image_weight: f32,
    width: u32,      // pad_rows: W
    stride: u32,     // pad_rows: padded row length in u32
    offset: u32,     // pad_rows: first pixel of the image in src_u32
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: RenderParams;
@group(0) @binding(1) var<storage, read> map: array<f32>;
@group(0) @binding(2) var<storage, read> lut_rgba: array<u32>;
@group(0) @binding(3) var<storage, read> lut_rgb: array<f32>;
@group(0) @binding(4) var<storage, read_write> out_u32: array<u32>;
@group(0) @binding(5) var<storage, read_write> out_f32: array<f32>;
@group(0) @binding(6) var<storage, read> image: array<f32>;
@group(0) @binding(7) var<storage, read_write> cam: array<f32>;
@group(0) @binding(8) var<storage, read_write> maxes: array<f32>;
@group(0) @binding(9) var<storage, read> src_u32: array<u32>;

// The LUT entry of map value x (truncating quantization, always in 0..=255).
fn lut_index(x: f32) -> u32 {
    return min(u32(clamp(x, 0.0, 1.0) * p.levels), 255u);
}

// out_u32[i] = colormap(map[i]) as packed RGBA8 (alpha 255).
@compute @workgroup_size(WG)
fn colormap_rgba(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    out_u32[i] = lut_rgba[lut_index(map[i])];
}

// out_f32[n, c, y, x] = colormap(map[n, y, x])[c] / 255 (exact: the LUT holds byte / 255).
@compute @workgroup_size(WG)
fn colormap_rgb(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let k = lut_index(map[i]) * 3u;
    let n = i / p.hw;
    let px = i - n * p.hw;
    let base = n * 3u * p.hw + px;
    out_f32[base] = lut_rgb[k];
    out_f32[base + p.hw] = lut_rgb[k + 1u];
    out_f32[base + 2u * p.hw] = lut_rgb[k + 2u];
}

// Overlay step 1: cam = heat_weight * heatmap + image_weight * image, per channel, each product
// rounded to f32 before the sum as NumPy computes it.
@compute @workgroup_size(WG)
fn overlay_blend(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let k = lut_index(map[i]) * 3u;
    let n = i / p.hw;
    let px = i - n * p.hw;
    let base = n * 3u * p.hw + px;
    var img_base = px;
    if (p.image_batch > 1u) {
        img_base = base;
    }
    for (var c = 0u; c < 3u; c++) {
        let heat = p.heat_weight * lut_rgb[k + c];
        let img = p.image_weight * image[img_base + c * p.hw];
        cam[base + c * p.hw] = heat + img;
    }
}

var<workgroup> partial: array<f32, WG>;

// Overlay step 2: maxes[n] = max of cam[n] over channels and pixels. One workgroup per image
// (workgroup id x = n).
@compute @workgroup_size(WG)
fn overlay_max(@builtin(local_invocation_id) lid: vec3<u32>,
               @builtin(workgroup_id) wid: vec3<u32>) {
    let n = wid.x;
    let len = 3u * p.hw;
    let base = n * len;
    var m = 0.0;
    for (var j = lid.x; j < len; j += WG) {
        m = max(m, cam[base + j]);
    }
    partial[lid.x] = m;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid.x < s) {
            partial[lid.x] = max(partial[lid.x], partial[lid.x + s]);
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        maxes[n] = partial[0];
    }
}

// Overlay step 3: out_u32 = RGBA8 of uint8(255 * (cam / max)), truncating like np.uint8; an
// all-zero image (max 0) gives black.
@compute @workgroup_size(WG)
fn overlay_finish(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let n = i / p.hw;
    let px = i - n * p.hw;
    let base = n * 3u * p.hw + px;
    let m = maxes[n];
    var packed = 0xff000000u;
    if (m > 0.0) {
        for (var c = 0u; c < 3u; c++) {
            let v = cam[base + c * p.hw] / m;
            let q = min(u32(max(255.0 * v, 0.0)), 255u);
            packed = packed | (q << (8u * c));
        }
    }
    out_u32[i] = packed;
}

// Copies image `offset / hw` of src_u32 into out_u32 with rows padded to `stride` u32, the
// 256-byte row alignment of buffer-to-texture copies. One thread per source pixel.
@compute @workgroup_size(WG)
fn pad_rows(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let y = i / p.width;
    let x = i - y * p.width;
    out_u32[y * p.stride + x] = src_u32[p.offset + i];
}
