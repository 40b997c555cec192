#!/usr/bin/env python3
"""numpy reference for cnnvis's Fourier (spectral) image parameterization.

Purpose
    src/vis/spectral.rs implements Lucid's `fft_image` + `to_valid_rgb(decorrelate=True,
    sigmoid=True)` (lucid/optvis/param/spatial.py, color.py). Lucid runs TensorFlow's
    `tf.signal.irfft2d`; this script uses numpy's `np.fft.irfft2`, which has the same
    conventions (inner length inferred as 2 * (Wc - 1); the imaginary parts of the DC and
    Nyquist columns after the outer inverse transform are ignored), so the Rust test pins the
    Hermitian convention against a real FFT library rather than against a re-reading of its
    documentation. Each case draws a spectrum with non-zero imaginary parts everywhere
    (including the coefficients irfft2 must ignore) and records every stage in float64:
      - `x.<case>`   float32 [1, C, 2, H, Wc]: the parameters (real plane, imaginary plane);
      - `lin.<case>` float64 [1, C, H, W]: irfft2(scale * (re + i im))[:H, :W] / 4;
      - `rgb.<case>` float64 [1, C, H, W]: sigmoid(lin @ (M / max_norm).T) for C = 3 (Lucid's
        float32 matrix and column-norm maximum), sigmoid(lin) for C = 1.
    Cases `<case>` = `{H}x{W}x{C}`: 7x6x3, 5x7x1, 8x9x3, 6x6x1 (odd W exercises Lucid's extra
    spectrum column and crop); decay_power 1.

How to run (from the repository root; CPU only, well under a second):
    /work/venv/bin/python tools/make_spectral_fixture.py
    needs numpy and safetensors. Deterministic (numpy Generator PCG64, seed 20240605);
    byte-identical output on rerun.

What it writes
    tests/fixtures/spectral.safetensors (about 10 KB), read by tests/vis_spectral.rs.
"""

import os

import numpy as np
from safetensors.numpy import save_file

CASES = [(7, 6, 3), (5, 7, 1), (8, 9, 3), (6, 6, 1)]
SEED = 20240605


def rfft2d_freqs(h, w):
    """Lucid's spatial.rfft2d_freqs, verbatim in behaviour."""
    fy = np.fft.fftfreq(h)[:, None]
    if w % 2 == 1:
        fx = np.fft.fftfreq(w)[: w // 2 + 2]
    else:
        fx = np.fft.fftfreq(w)[: w // 2 + 1]
    return np.sqrt(fx * fx + fy * fy)


def lucid_image(x, h, w, decay_power=1.0):
    """x: [C, 2, H, Wc] float32 -> (lin, rgb) float64 [C, H, W]."""
    freqs = rfft2d_freqs(h, w)
    scale = 1.0 / np.maximum(freqs, 1.0 / max(w, h)) ** decay_power
    scale *= np.sqrt(w * h)
    spectrum = x[:, 0].astype(np.float64) + 1j * x[:, 1].astype(np.float64)
    img = np.fft.irfft2(scale * spectrum)  # [C, H, 2 * (Wc - 1)]
    lin = img[:, :h, :w] / 4.0
    c = x.shape[0]
    if c == 3:
        corr = np.asarray(
            [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]]
        ).astype("float32")
        max_norm = np.max(np.linalg.norm(corr, axis=0))
        m = (corr / max_norm).astype(np.float64)
        t = np.transpose(lin, (1, 2, 0)).reshape(-1, 3) @ m.T
        z = np.transpose(t.reshape(h, w, 3), (2, 0, 1))
    else:
        z = lin
    return lin, 1.0 / (1.0 + np.exp(-z))


def main():
    rng = np.random.default_rng(SEED)
    out = {}
    for h, w, c in CASES:
        wc = rfft2d_freqs(h, w).shape[1]
        x = rng.uniform(-1.0, 1.0, size=(1, c, 2, h, wc)).astype(np.float32)
        lin, rgb = lucid_image(x[0], h, w)
        name = f"{h}x{w}x{c}"
        out[f"x.{name}"] = np.ascontiguousarray(x)
        out[f"lin.{name}"] = np.ascontiguousarray(lin[None], dtype=np.float64)
        out[f"rgb.{name}"] = np.ascontiguousarray(rgb[None], dtype=np.float64)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "tests", "fixtures", "spectral.safetensors")
    save_file(out, path, metadata={"cases": ",".join(f"{h}x{w}x{c}" for h, w, c in CASES)})
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
