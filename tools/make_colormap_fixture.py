#!/usr/bin/env python3
"""Reference colormaps and overlays for cnnvis's render tests.

Purpose
    cnnvis renders maps with OpenCV's COLORMAP_JET (what keras-vis and pytorch-grad-cam use),
    matplotlib's viridis, and grayscale, and overlays them on images as pytorch-grad-cam's
    `show_cam_on_image(img, mask, use_rgb=True, image_weight=w)` does. This script asks the real
    libraries for the answers, so the Rust tests compare against them rather than against a
    re-reading of their source:
      - `jet`: the 256-entry RGB table of `cv2.applyColorMap(np.arange(256, dtype=uint8),
        cv2.COLORMAP_JET)` after BGR->RGB. OpenCV builds this LUT from a float table that
        interpolates jet's key points; for 8-bit input the LUT IS the definition.
      - `viridis`: the 256-entry byte table that matplotlib's `colormaps['viridis'](x,
        bytes=True)` indexes (its float LUT times 255, truncated), read by calling it on the
        integer indices 0..255.
      - `samples`: float32 mask values (edge values included) with, for each colormap, the
        bytes the libraries produce: jet = cv2 on `np.uint8(255 * mask)` (truncation), viridis =
        `cmap(mask, bytes=True)` (index floor(256 * x) clamped to 255), gray = `np.uint8(255 *
        mask)`.
      - `overlays`: random images (float32 `k / 255` from random bytes k, stored as the bytes)
        and float32 masks in [0, 1], with `show_cam_on_image(img, mask, use_rgb=True,
        image_weight=w)` for w in {0.5, 0.3}.
    It also writes `src/render/tables.rs`, the Rust constants of both tables, so the library
    carries the exact tables and the test checks them against this fixture.

How to run (from the repository root; CPU only, ~2 s):
    /work/venv/bin/python tools/make_colormap_fixture.py
    needs numpy, opencv-python-headless, matplotlib, grad-cam (pytorch_grad_cam).

What it writes
    tests/fixtures/render/colormaps.json  (~60 KB)
    src/render/tables.rs
Deterministic: numpy RandomState(0).
"""
import json
import os

import cv2
import matplotlib
import numpy as np
from pytorch_grad_cam.utils.image import show_cam_on_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def jet_table():
    x = np.arange(256, dtype=np.uint8).reshape(1, 256)
    bgr = cv2.applyColorMap(x, cv2.COLORMAP_JET)[0]
    return bgr[:, ::-1].astype(int)


def viridis_table():
    cmap = matplotlib.colormaps["viridis"]
    assert cmap.N == 256
    # What Colormap.__call__(X, bytes=True) indexes: its internal float LUT times 255, truncated.
    idx = np.arange(256)
    table = cmap(idx, bytes=True)[:, :3].astype(int)  # integer input indexes the LUT directly
    return table


def f32_list(a):
    # repr of a float32 widened to float64 is exact and parses back to the same float32.
    return [float(v) for v in np.asarray(a, dtype=np.float32).ravel()]


def main():
    rng = np.random.RandomState(0)
    jet = jet_table()
    viridis = viridis_table()
    cmap = matplotlib.colormaps["viridis"]

    # Sample masks: edges, exact multiples of 1/255 and 1/256, random.
    edges = [0.0, 1.0, 0.5, 1 / 255, 2 / 255, 254 / 255, 1 / 256, 255 / 256, 0.999999, 1e-8]
    samples = np.concatenate([np.array(edges), rng.rand(300)]).astype(np.float32)
    jet_s = cv2.applyColorMap(np.uint8(255 * samples).reshape(1, -1), cv2.COLORMAP_JET)[0][:, ::-1]
    vir_s = cmap(samples, bytes=True)[:, :3]
    gray_s = np.uint8(255 * samples)

    overlays = []
    for i, (h, w, weight) in enumerate([(12, 16, 0.5), (9, 7, 0.3), (32, 24, 0.5)]):
        img_u8 = rng.randint(0, 256, size=(h, w, 3)).astype(np.uint8)
        img = np.float32(img_u8) / 255
        mask = rng.rand(h, w).astype(np.float32)
        if i == 2:
            mask = (mask - mask.min()) / (mask.max() - mask.min())  # reaches exactly 0 and 1
            mask = mask.astype(np.float32)
        out = show_cam_on_image(img, mask, use_rgb=True, image_weight=weight)
        overlays.append({
            "height": h,
            "width": w,
            "image_weight": weight,
            "image_u8": img_u8.ravel().tolist(),  # [H, W, 3]
            "mask": f32_list(mask),  # [H, W]
            "expected": out.ravel().tolist(),  # [H, W, 3] uint8
        })

    fixture = {
        "notes": "made by tools/make_colormap_fixture.py; tables are RGB bytes [256][3]",
        "opencv": cv2.__version__,
        "matplotlib": matplotlib.__version__,
        "jet": jet.tolist(),
        "viridis": viridis.tolist(),
        "samples": {
            "mask": f32_list(samples),
            "jet": jet_s.astype(int).tolist(),
            "viridis": vir_s.astype(int).tolist(),
            "gray": gray_s.astype(int).tolist(),
        },
        "overlays": overlays,
    }
    out_dir = os.path.join(ROOT, "tests", "fixtures", "render")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "colormaps.json"), "w") as f:
        json.dump(fixture, f, separators=(",", ":"))

    def rust_table(name, table, doc):
        rows = ",\n".join(
            "    " + ", ".join(f"[{r}, {g}, {b}]" for r, g, b in table[i:i + 4])
            for i in range(0, 256, 4)
        )
        return f"{doc}\npub(crate) const {name}: [[u8; 3]; 256] = [\n{rows},\n];\n"

    rs = (
        "//! Colormap tables (RGB bytes, index 0..=255). Generated by\n"
        "//! `tools/make_colormap_fixture.py` from OpenCV "
        f"{cv2.__version__} and matplotlib {matplotlib.__version__};\n"
        "//! `tests/render.rs` checks them against `tests/fixtures/render/colormaps.json`.\n\n"
        + rust_table("JET", jet, "/// OpenCV's `COLORMAP_JET` LUT, converted from BGR to RGB.")
        + "\n"
        + rust_table(
            "VIRIDIS", viridis,
            "/// matplotlib's viridis as `Colormap.__call__(x, bytes=True)` indexes it.")
    )
    with open(os.path.join(ROOT, "src", "render", "tables.rs"), "w") as f:
        f.write(rs)
    print("wrote tests/fixtures/render/colormaps.json and src/render/tables.rs")


if __name__ == "__main__":
    main()
