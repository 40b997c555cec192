"""Train cnnvis's two demo models and write their test images.

Run (from the repository root; CPU only, two threads):

    /work/venv/bin/python tools/train_demo.py [--out-dir .]

`--out-dir` defaults to the repository root (the parent of tools/); `--only digits|shapes` remakes
one model (the two are independent: each reseeds everything).

What it does
  * digits: a synthetic MNIST-like set of 28x28 grayscale digits 0-9, white on black, drawn with PIL
    from the DejaVu fonts Debian ships (/usr/share/fonts/truetype/dejavu/: Sans, Sans-Bold,
    Sans-ExtraLight, obliques, condensed, Serif, Serif-Bold, Serif-Italic, Mono, Mono-Bold...), with
    random stroke width, random affine transforms (rotation, scale, shear, translation), blur and
    noise; quantized to uint8 like the stored PNGs. Model (names are the PyTorch module paths):
      features: conv(1->16,3,p1)-BN-ReLU-maxpool2, conv(16->32,3,p1)-BN-ReLU-maxpool2,
                conv(32->64,3,p1)-BN-ReLU; avgpool: adaptive (1,1); flatten;
      classifier: dropout, linear(64->10).
  * shapes: 64x64 RGB images holding one object of the classes
      circle, square, triangle, star, cross, ring (in this order)
    with random size, position, rotation and colour on a cluttered background (random gradient, thin
    lines, small blobs, noise in other colours; never another complete shape), and the object's
    bounding box. Model:
      features: conv(3->16)-BN-ReLU-maxpool2, conv(16->32)-BN-ReLU-maxpool2,
                conv(32->64)-BN-ReLU-maxpool2, conv(64->64)-BN-ReLU (8x8);
      avgpool: adaptive (1,1) (global average pool); flatten; classifier: dropout, linear(64->6)
    (GAP + linear, so classic CAM applies). All convs 3x3, padding 1, no bias (BN follows).
  * Inputs are uint8 pixels normalized as (pixel/255 - 0.5)/0.5 per channel (mean = std = 0.5,
    recorded in the graph JSON "input").

What it writes (under --out-dir)
  models/digits.safetensors, models/shapes.safetensors
      eval-mode state_dict, all tensors f32 ("num_batches_tracked" is dropped), with
      __metadata__ {"cnnvis.graph": <graph JSON, format cnnvis.graph/1, with "classes">}
  models/digits.graph.json, models/shapes.graph.json   the same graph JSON, pretty-printed
  tests/data/digits/NN.png (20, 28x28 mode "L"), tests/data/digits/labels.json
  tests/data/shapes/NN.png (20, 64x64 RGB), tests/data/shapes/labels.json
      labels.json: {"classes": [...], "images": [{"file": "00.png", "label": 3, "box": [...]
      (shapes only)}, ...], "logits": [[...], ...] (PyTorch eval-mode logits of each PNG as saved
      and reloaded), "expected_probs": softmax of those logits, "box_format" (shapes only)}.
      The 20 images are the first 20 of the held-out test set (labels cycle through the classes).
      Shapes boxes are [x0, y0, x1, y1] in pixels, x0/y0 inclusive and x1/y1 exclusive, covering
      every pixel at least half covered by the object.

Determinism: SEED = 20261126; data from numpy Generators seeded from it, torch.manual_seed,
torch.use_deterministic_algorithms(True), torch.set_num_threads(2).

Measured on the 2-core build machine while Rust compiles and another script shared it (load 3-11):
  digits: data 17 s, training 64 s (6 epochs x 20000), held-out accuracy 100.00 % (2000 images),
          20/20 on the test PNGs.
  shapes: data 132 s, training 574 s (12 epochs x 12000), held-out accuracy 98.55 % (2000
          images), 20/20 on the test PNGs. Whole script about 13 min at that load.
  Uncontended, one training step costs about 1.4 ms per 64x64 image (0.3 ms per digit), so the
  whole script should take about 6 minutes on 2 free cores.
"""

import argparse
import json
import math
import os
import time

import numpy as np

# Two OpenMP threads that spin-wait are ~5x slower than one thread when the cores are shared with
# other work (measured); passive waiting keeps two threads at least as fast as one.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter, ImageFont  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

SEED = 20261126
FONT_DIR = "/usr/share/fonts/truetype/dejavu"
FONT_FILES = [
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-ExtraLight.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansCondensed.ttf",
    "DejaVuSansCondensed-Bold.ttf",
    "DejaVuSansCondensed-Oblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerifCondensed.ttf",
    "DejaVuSerifCondensed-Bold.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
]
DIGIT_CLASSES = [str(i) for i in range(10)]
SHAPE_CLASSES = ["circle", "square", "triangle", "star", "cross", "ring"]
MEAN, STD = 0.5, 0.5

N_DIGITS_TRAIN, N_DIGITS_TEST = 20000, 2000
N_SHAPES_TRAIN, N_SHAPES_TEST = 12000, 2000
N_PNG = 20


# ----------------------------------------------------------------------------------------------
# digits data

SS = 4  # supersampling factor for drawing
_font_cache = {}


def _font(i, size):
    key = (i, size)
    if key not in _font_cache:
        _font_cache[key] = ImageFont.truetype(os.path.join(FONT_DIR, FONT_FILES[i]), size)
    return _font_cache[key]


def render_digit(rng, d):
    """One 28x28 uint8 image of digit d (white on black)."""
    big = 28 * SS
    fi = int(rng.integers(len(FONT_FILES)))
    size = int(rng.integers(15, 21)) * 4  # glyph box ~ 20 px tall at 28 px scale
    stroke = int(rng.integers(0, 4)) if "ExtraLight" not in FONT_FILES[fi] else int(rng.integers(0, 6))
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    font = _font(fi, size)
    l, t, r, b = draw.textbbox((0, 0), str(d), font=font, stroke_width=stroke)
    x = (big - (r - l)) / 2 - l
    y = (big - (b - t)) / 2 - t
    draw.text((x, y), str(d), fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    # random affine about the centre: output point p maps to input point A p + c
    rot = math.radians(rng.uniform(-15, 15))
    scale = rng.uniform(0.8, 1.15)
    sx = scale * rng.uniform(0.9, 1.1)
    sy = scale * rng.uniform(0.9, 1.1)
    shear = rng.uniform(-0.3, 0.3)
    tx, ty = rng.uniform(-2.5, 2.5) * SS, rng.uniform(-2.5, 2.5) * SS
    # forward transform M = R @ Sh @ S
    cr, sr = math.cos(rot), math.sin(rot)
    m = np.array([[cr, -sr], [sr, cr]]) @ np.array([[1, shear], [0, 1]]) @ np.diag([sx, sy])
    inv = np.linalg.inv(m)
    cx = cy = big / 2
    # input = inv @ (out - c - t) + c
    off = np.array([cx, cy]) - inv @ np.array([cx + tx, cy + ty])
    img = img.transform(
        (big, big),
        Image.AFFINE,
        (inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1]),
        resample=Image.BILINEAR,
    )
    img = img.resize((28, 28), Image.BOX)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    a = np.asarray(img, dtype=np.float32)
    a *= rng.uniform(0.75, 1.0)  # ink intensity
    a += rng.normal(0, rng.uniform(0, 12), a.shape)
    if rng.random() < 0.3:  # salt noise
        n = int(rng.integers(1, 8))
        a[rng.integers(0, 28, n), rng.integers(0, 28, n)] += rng.uniform(40, 160, n)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def make_digits(n, seed, cycle):
    rng = np.random.default_rng(seed)
    x = np.empty((n, 28, 28), np.uint8)
    y = np.empty(n, np.int64)
    for i in range(n):
        d = i % 10 if cycle else int(rng.integers(10))
        x[i] = render_digit(rng, d)
        y[i] = d
    return x[:, None], y


# ----------------------------------------------------------------------------------------------
# shapes data

def _poly(cx, cy, pts, rot):
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + px * c - py * s, cy + px * s + py * c) for px, py in pts]


def draw_shape(draw, cls, cx, cy, r, rot, rng, fill):
    """Draws class cls centred at (cx, cy) with outer radius r (supersampled coordinates)."""
    if cls == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif cls == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        ri = r * rng.uniform(0.5, 0.68)
        return ("hole", [cx - ri, cy - ri, cx + ri, cy + ri])
    elif cls == "square":
        h = r / math.sqrt(2)
        draw.polygon(_poly(cx, cy, [(-h, -h), (h, -h), (h, h), (-h, h)], rot), fill=fill)
    elif cls == "triangle":
        pts = []
        for k in range(3):
            a = -math.pi / 2 + k * 2 * math.pi / 3 + rng.uniform(-0.15, 0.15)
            rr = r * rng.uniform(0.9, 1.0)
            pts.append((rr * math.cos(a), rr * math.sin(a)))
        draw.polygon(_poly(cx, cy, pts, rot), fill=fill)
    elif cls == "star":
        ri = r * rng.uniform(0.38, 0.5)
        pts = []
        for k in range(10):
            a = -math.pi / 2 + k * math.pi / 5
            rr = r if k % 2 == 0 else ri
            pts.append((rr * math.cos(a), rr * math.sin(a)))
        draw.polygon(_poly(cx, cy, pts, rot), fill=fill)
    elif cls == "cross":
        w = r * rng.uniform(0.28, 0.4)
        h = r
        pts = [(-w, -h), (w, -h), (w, -w), (h, -w), (h, w), (w, w), (w, h), (-w, h), (-w, w),
               (-h, w), (-h, -w), (-w, -w)]
        draw.polygon(_poly(cx, cy, pts, rot), fill=fill)
    return None


def _color_far(rng, others, min_dist):
    for _ in range(200):
        c = rng.integers(0, 256, 3)
        if all(np.linalg.norm(c - np.asarray(o, float)) >= min_dist for o in others):
            return c
    return c


def render_shape(rng, cls):
    """One 64x64x3 uint8 image with one object of class cls; returns (image, box)."""
    S = 64
    B = S * SS
    # background gradient between two colours along a random direction
    c0 = rng.integers(0, 256, 3).astype(np.float32)
    c1 = rng.integers(0, 256, 3).astype(np.float32)
    ang = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / (S - 1) - 0.5
    t = np.clip(xx * math.cos(ang) + yy * math.sin(ang) + 0.5, 0, 1)[..., None]
    bg = c0 * (1 - t) + c1 * t
    # object parameters
    r = rng.uniform(9, 20)  # outer radius in output pixels
    cx = rng.uniform(r + 1, S - 1 - r)
    cy = rng.uniform(r + 1, S - 1 - r)
    rot = rng.uniform(0, 2 * math.pi)
    bg_at = bg[int(cy), int(cx)]
    obj_col = _color_far(rng, [bg_at, c0, c1], 110)
    # clutter, supersampled
    im = Image.fromarray(np.rint(bg).astype(np.uint8), "RGB").resize((B, B), Image.BILINEAR)
    dr = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(1, 7))):  # thin lines
        col = tuple(int(v) for v in _color_far(rng, [obj_col], 90))
        p = rng.uniform(-8, S + 8, 4) * SS
        dr.line([p[0], p[1], p[2], p[3]], fill=col, width=int(rng.uniform(0.7, 1.8) * SS))
    for _ in range(int(rng.integers(4, 20))):  # small blobs
        col = tuple(int(v) for v in _color_far(rng, [obj_col], 90))
        bx, by = rng.uniform(0, S, 2) * SS
        rx, ry = rng.uniform(0.5, 2.2, 2) * SS
        dr.ellipse([bx - rx, by - ry, bx + rx, by + ry], fill=col)
    clutter = im
    # object mask, supersampled
    mask = Image.new("L", (B, B), 0)
    md = ImageDraw.Draw(mask)
    hole = draw_shape(md, cls, cx * SS, cy * SS, r * SS, rot, rng, 255)
    if hole is not None:
        md.ellipse(hole[1], fill=0)
    obj = Image.new("RGB", (B, B), tuple(int(v) for v in obj_col))
    im = Image.composite(obj, clutter, mask).resize((S, S), Image.BOX)
    cov = np.asarray(mask.resize((S, S), Image.BOX))
    ys, xs = np.nonzero(cov >= 128)
    box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
    a = np.asarray(im, dtype=np.float32)
    a += rng.normal(0, rng.uniform(0, 10), a.shape)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8), box


def make_shapes(n, seed, cycle):
    rng = np.random.default_rng(seed)
    x = np.empty((n, 64, 64, 3), np.uint8)
    y = np.empty(n, np.int64)
    boxes = []
    for i in range(n):
        c = i % len(SHAPE_CLASSES) if cycle else int(rng.integers(len(SHAPE_CLASSES)))
        x[i], box = render_shape(rng, SHAPE_CLASSES[c])
        y[i] = c
        boxes.append(box)
    return x.transpose(0, 3, 1, 2).copy(), y, boxes


# ----------------------------------------------------------------------------------------------
# models and graphs

def conv_bn_relu(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class Net(nn.Module):
    def __init__(self, chans, pools, n_classes):
        super().__init__()
        layers = []
        for i in range(len(chans) - 1):
            layers += conv_bn_relu(chans[i], chans[i + 1])
            if i < pools:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(chans[-1], n_classes))

    def forward(self, x):
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


def graph_of(model, arch, channels, size, classes):
    layers = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            layers.append({"name": name, "op": "conv2d", "stride": m.stride[0], "padding": m.padding[0]})
        elif isinstance(m, nn.BatchNorm2d):
            layers.append({"name": name, "op": "batchnorm2d", "eps": m.eps})
        elif isinstance(m, nn.ReLU):
            layers.append({"name": name, "op": "relu"})
        elif isinstance(m, nn.MaxPool2d):
            layers.append({"name": name, "op": "maxpool2d", "kernel": m.kernel_size, "stride": m.stride})
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            layers.append({"name": name, "op": "adaptive_avgpool2d", "output": list(m.output_size)})
        elif isinstance(m, nn.Flatten):
            layers.append({"name": name, "op": "flatten"})
        elif isinstance(m, nn.Dropout):
            layers.append({"name": name, "op": "dropout"})
        elif isinstance(m, nn.Linear):
            layers.append({"name": name, "op": "linear"})
        elif name not in ("", "features", "classifier"):
            raise ValueError(f"unmapped module {name}: {m}")
    return {
        "format": "cnnvis.graph/1",
        "arch": arch,
        "input": {"channels": channels, "height": size, "width": size,
                  "mean": [MEAN] * channels, "std": [STD] * channels},
        "classes": classes,
        "layers": layers,
        "output": layers[-1]["name"],
    }


def normalize(xu8):
    return (torch.from_numpy(xu8).float() / 255.0 - MEAN) / STD


def train(model, x, y, epochs, lr, batch, gen, augment_flip=False, channels_last=False,
          eval_fn=None, pct_start=0.2):
    n = len(y)
    if channels_last:  # about twice as fast for the 64x64 model on CPU
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((n + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=pct_start)
    yt = torch.from_numpy(y)
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        tot, correct, t0 = 0.0, 0, time.time()
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            xb = normalize(x[idx.numpy()])
            if augment_flip:
                fl = torch.rand(len(idx), generator=gen) < 0.5
                xb = torch.where(fl[:, None, None, None], xb.flip(3), xb)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yb = yt[idx]
            out = model(xb)
            loss = F.cross_entropy(out, yb, label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
            correct += (out.argmax(1) == yb).sum().item()
        print(f"  epoch {ep + 1}/{epochs}: loss {tot / n:.4f} train acc {correct / n:.4f} "
              f"({time.time() - t0:.1f} s)" + (f" held-out {eval_fn():.4f}" if eval_fn else ""),
              flush=True)
    model.to(memory_format=torch.contiguous_format)
    model.eval()


@torch.no_grad()
def evaluate(model, x, y):
    model.eval()
    correct = 0
    for i in range(0, len(y), 500):
        correct += (model(normalize(x[i:i + 500])).argmax(1).numpy() == y[i:i + 500]).sum()
    return correct / len(y)


def evaluate_train(model, x, y):
    """Held-out accuracy in the middle of training (restores train mode)."""
    acc = evaluate(model, x, y)
    model.train()
    return acc


def save_model(model, graph, path_st, path_json):
    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()
          if not k.endswith("num_batches_tracked")}
    gjson = json.dumps(graph, separators=(",", ":"))
    save_file(sd, path_st, metadata={"cnnvis.graph": gjson})
    with open(path_json, "w") as f:
        json.dump(graph, f, indent=2)
        f.write("\n")


@torch.no_grad()
def write_pngs(model, x, y, classes, out_dir, boxes=None):
    os.makedirs(out_dir, exist_ok=True)
    images, logits = [], []
    for i in range(N_PNG):
        fname = f"{i:02d}.png"
        path = os.path.join(out_dir, fname)
        if x.shape[1] == 1:
            Image.fromarray(x[i, 0], "L").save(path)
        else:
            Image.fromarray(x[i].transpose(1, 2, 0), "RGB").save(path)
        back = np.asarray(Image.open(path))
        back = back[None] if back.ndim == 2 else back.transpose(2, 0, 1)
        assert np.array_equal(back, x[i]), "PNG round trip changed pixels"
        lg = model(normalize(back[None].copy()))[0]
        logits.append([float(v) for v in lg])
        entry = {"file": fname, "label": int(y[i])}
        if boxes is not None:
            entry["box"] = boxes[i]
        images.append(entry)
    lt = torch.tensor(logits)
    probs = torch.softmax(lt.double(), 1).tolist()
    acc = int((lt.argmax(1).numpy() == y[:N_PNG]).sum())
    doc = {"classes": classes, "images": images, "logits": logits, "expected_probs": probs}
    if boxes is not None:
        doc["box_format"] = "[x0, y0, x1, y1] pixels; x0, y0 inclusive, x1, y1 exclusive"
    with open(os.path.join(out_dir, "labels.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    return acc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--only", choices=["digits", "shapes"], help="make one model only")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    os.makedirs(os.path.join(args.out_dir, "models"), exist_ok=True)
    t_all = time.time()
    report = []

    if args.only in (None, "digits"):
        t0 = time.time()
        xtr, ytr = make_digits(N_DIGITS_TRAIN, SEED + 1, cycle=False)
        xte, yte = make_digits(N_DIGITS_TEST, SEED + 2, cycle=True)
        t_data = time.time() - t0
        print(f"digits: data {t_data:.1f} s", flush=True)
        torch.manual_seed(SEED)
        gen = torch.Generator().manual_seed(SEED)
        model = Net([1, 16, 32, 64], 2, 10)
        t0 = time.time()
        train(model, xtr, ytr, epochs=6, lr=4e-3, batch=128, gen=gen)
        t_train = time.time() - t0
        acc = evaluate(model, xte, yte)
        g = graph_of(model, "digits-cnn", 1, 28, DIGIT_CLASSES)
        save_model(model, g, os.path.join(args.out_dir, "models/digits.safetensors"),
                   os.path.join(args.out_dir, "models/digits.graph.json"))
        n20 = write_pngs(model, xte, yte, DIGIT_CLASSES, os.path.join(args.out_dir, "tests/data/digits"))
        report.append(f"digits: data {t_data:.0f} s, train {t_train:.0f} s, held-out acc "
                      f"{acc * 100:.2f} % ({len(yte)}), test PNGs {n20}/{N_PNG}")
        print(report[-1], flush=True)

    if args.only in (None, "shapes"):
        t0 = time.time()
        xtr, ytr, _ = make_shapes(N_SHAPES_TRAIN, SEED + 3, cycle=False)
        xte, yte, bte = make_shapes(N_SHAPES_TEST, SEED + 4, cycle=True)
        t_data = time.time() - t0
        print(f"shapes: data {t_data:.1f} s", flush=True)
        torch.manual_seed(SEED)
        gen = torch.Generator().manual_seed(SEED)
        model = Net([3, 16, 32, 64, 64], 3, len(SHAPE_CLASSES))
        t0 = time.time()
        # horizontal flips keep every class (and are free extra data)
        train(model, xtr, ytr, epochs=12, lr=3e-3, batch=64, gen=gen, augment_flip=True,
              channels_last=True, pct_start=0.15,
              eval_fn=lambda: evaluate_train(model, xte[:600], yte[:600]))
        t_train = time.time() - t0
        acc = evaluate(model, xte, yte)
        g = graph_of(model, "shapes-cnn", 3, 64, SHAPE_CLASSES)
        save_model(model, g, os.path.join(args.out_dir, "models/shapes.safetensors"),
                   os.path.join(args.out_dir, "models/shapes.graph.json"))
        n20 = write_pngs(model, xte, yte, SHAPE_CLASSES, os.path.join(args.out_dir, "tests/data/shapes"),
                         boxes=bte)
        report.append(f"shapes: data {t_data:.0f} s, train {t_train:.0f} s, held-out acc "
                      f"{acc * 100:.2f} % ({len(yte)}), test PNGs {n20}/{N_PNG}")
        print(report[-1], flush=True)

    print("\n".join(report))
    print(f"total {time.time() - t_all:.0f} s")


if __name__ == "__main__":
    main()
