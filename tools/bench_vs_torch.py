#!/usr/bin/env python3
"""cnnvis against PyTorch on the same device, in one run, case by case.

Purpose
    Times the same visualizations of full-size torchvision VGG16 and ResNet50 (random
    weights, 224x224 input) in PyTorch and in cnnvis, alternating: for each model and case,
    the PyTorch figure is measured, then cnnvis's end-to-end bench binary (``benches/e2e.rs``)
    runs that one case as a subprocess with ``--json``. Prints a table of both medians and
    their ratio (cnnvis / torch: below 1 means cnnvis is faster) and keeps every raw time in
    a JSON file.

    PyTorch implementations (what a user would otherwise run):
      forward      ``model(x)`` under ``torch.no_grad()``, logits copied to the host
      saliency     plain autograd: ``torch.autograd.grad(logits[:, 243].sum(), x)``, |g|.amax(C)
      guided       Captum ``GuidedBackprop`` (fallback: ReLU backward hooks clamping at 0)
      gradcam      pytorch-grad-cam ``GradCAM`` at ``features.30`` / ``layer4`` (cnnvis's
                   defaults; fallback: hooks + autograd, spatial-mean weights, ReLU, bilinear)
      smoothgrad   Captum ``NoiseTunnel(Saliency)``, 50 samples, sigma = 0.15 (max - min)
                   (fallback: a loop of autograd calls in chunks)
      scorecam     pytorch-grad-cam ``ScoreCAM`` (batch 16; fallback: the same loop by hand)
      am           keras-vis activation maximization as a plain autograd loop: mean of filter
      am-filters   0 (or of filters 0..63, batch 64) of the last conv layer, Lp(6) and TV(2)
                   penalties of weight 10, RMS-normalized gradient, keras-vis RMSProp, clip,
                   keep-best; 200 iterations; full forward with a hook, as cnnvis runs it
    The class target is 243 everywhere. The model's parameters keep ``requires_grad`` as
    torchvision makes them (pytorch-grad-cam's ``backward()`` then also computes weight
    gradients, as it does for its users); the plain-autograd cases differentiate with respect
    to the input only. If captum or pytorch_grad_cam cannot be imported, the fallbacks run and
    the table's ``torch impl`` column says so. tqdm progress bars are disabled.

    Timing: one untimed warm-up call per case (heavy cases with reduced counts), then
    ``--samples`` timed calls, each ending with its result copied to the host; on CUDA with
    ``torch.cuda.synchronize()`` around every sample. CUDA runs FP32 with TF32 off unless
    ``--tf32``.

How to run (repository root)
    cargo bench --bench e2e --no-run          # builds target/release/deps/e2e-HASH
    python tools/bench_vs_torch.py --device cpu --models resnet50 --cases forward,saliency \\
        --samples 2 --json bench_cpu.json
    python tools/bench_vs_torch.py --device cuda [--tf32] [--cnnvis PATH/TO/e2e-HASH]
    Options: --models vgg16,resnet50  --cases forward,saliency,guided,gradcam (default; also
    smoothgrad, scorecam, am, am-filters, forward-plan, saliency-plan, load, first-call;
    `light`, `heavy`, `all`)  --batch 1[,64]  --samples N  --threads N (torch CPU threads)  --am-iters N
    --am-filters N  --smoothgrad-samples N  --no-cnnvis (torch only)  --no-torch (cnnvis only)
    --json OUT. Without --cnnvis it runs `cargo bench --bench e2e --no-run` (building the
    binary if stale) where cargo exists, else takes the newest target/release/deps/e2e-* (or
    .benchbin/e2e). Seeds are fixed (torch.manual_seed(0), input seed 7).

What it writes
    Only the ``--json`` file: ``{"torch": {...}, "cnnvis": {...}, "args": {...}, "rows":
    [{model, case, batch, torch: {median_s, min_s, times_s, impl}, cnnvis: {median_s, min_s,
    times_s, gflop, ...}, ratio}]}``.
"""

import argparse
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
import torchvision  # noqa: E402

CLASS = 243
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CAM_LAYER = {"vgg16": "features.30", "resnet50": "layer4"}
AM_LAYER = {"vgg16": "features.28", "resnet50": "layer4.2.conv3"}
CASES = ["load", "first-call", "forward", "forward-plan", "saliency", "saliency-plan", "guided",
         "gradcam", "smoothgrad", "scorecam", "am", "am-filters"]
LIGHT = ["forward", "saliency", "guided", "gradcam"]
HEAVY = ["smoothgrad", "scorecam", "am", "am-filters"]
BATCHED = ["forward", "forward-plan", "saliency", "saliency-plan", "guided", "gradcam"]
# Cases with no PyTorch counterpart (cnnvis only).
CNNVIS_ONLY = ["load", "first-call", "forward-plan", "saliency-plan"]

try:
    import captum.attr as captum_attr  # noqa: E402
except Exception:  # pragma: no cover - depends on the machine
    captum_attr = None
try:
    import pytorch_grad_cam  # noqa: E402
    import pytorch_grad_cam.score_cam as _score_cam  # noqa: E402
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

    class _NoBar:
        """Stands in for the tqdm module inside ScoreCAM: no progress bar."""

        @staticmethod
        def tqdm(it, *a, **k):
            return it

    _score_cam.tqdm = _NoBar
except Exception:  # pragma: no cover
    pytorch_grad_cam = None


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--tf32", action="store_true", help="allow TF32 on CUDA (default: FP32)")
    p.add_argument("--models", default="vgg16,resnet50")
    p.add_argument("--cases", default="light")
    p.add_argument("--batch", default="1", help="batch sizes of the batched cases, e.g. 1,64")
    p.add_argument("--samples", type=int, default=3)
    p.add_argument("--heavy-samples", type=int, default=0,
                   help="samples of smoothgrad, scorecam, am, am-filters (0: --samples)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--am-iters", type=int, default=200)
    p.add_argument("--am-filters", type=int, default=64)
    p.add_argument("--smoothgrad-samples", type=int, default=50)
    p.add_argument("--scorecam-batch", type=int, default=16)
    p.add_argument("--cnnvis", default=None, help="path of the e2e bench binary")
    p.add_argument("--no-cnnvis", action="store_true")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--reuse-cnnvis", default=None, metavar="JSON",
                   help="take cnnvis's figures from an earlier run's --json instead of running "
                        "the bench (e.g. for a TF32 rerun of the torch side)")
    p.add_argument("--json", default=None)
    p.add_argument("--verbose", action="store_true", help="echo the bench binary's output")
    a = p.parse_args()
    cases = []
    for c in a.cases.split(","):
        c = c.strip()
        group = {"light": LIGHT, "heavy": HEAVY, "all": CASES}.get(c)
        if group:
            cases += group
        elif c in CASES:
            cases.append(c)
        elif c:
            p.error(f"unknown case {c!r}; expected {', '.join(CASES)}, light, heavy, all")
    a.case_list = [c for c in CASES if c in cases]
    a.model_list = [m.strip() for m in a.models.split(",") if m.strip()]
    for m in a.model_list:
        if m not in CAM_LAYER:
            p.error(f"unknown model {m!r}; expected vgg16, resnet50")
    a.batch_list = [int(b) for b in a.batch.split(",") if b.strip()]
    return a


# ---------------------------------------------------------------- device and timing


def setup_device(args):
    if args.device == "cuda":
        if not torch.cuda.is_available():
            sys.exit("error: --device cuda but torch.cuda.is_available() is False")
        mode = "tf32" if args.tf32 else "ieee"
        try:
            torch.backends.cuda.matmul.fp32_precision = mode
            torch.backends.cudnn.conv.fp32_precision = mode
        except AttributeError:  # older torch: the legacy flags
            torch.backends.cuda.matmul.allow_tf32 = args.tf32
            torch.backends.cudnn.allow_tf32 = args.tf32
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    return torch.device(args.device)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def time_calls(dev, fn, samples, warm=None):
    (warm or fn)()
    sync(dev)
    times = []
    for _ in range(samples):
        sync(dev)
        t = time.perf_counter()
        fn()
        sync(dev)
        times.append(time.perf_counter() - t)
    return times


# ---------------------------------------------------------------- models and methods


def make_model(name, dev):
    torch.manual_seed(0)
    m = getattr(torchvision.models, name)(weights=None)
    return m.eval().to(dev)


def module(model, path):
    m = model
    for part in path.split("."):
        m = m[int(part)] if part.isdigit() else getattr(m, part)
    return m


def make_input(shape, dev, seed=7):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) * 2 - 1).to(dev)


def vanilla(model, x):
    x = x.detach().requires_grad_(True)
    out = model(x)
    (g,) = torch.autograd.grad(out[:, CLASS].sum(), x)
    return g.abs().amax(1).cpu()


def guided_fn(model):
    if captum_attr is not None:
        gbp = captum_attr.GuidedBackprop(model)

        def run(x):
            return gbp.attribute(x, target=CLASS).abs().amax(1).cpu()

        return run, "captum GuidedBackprop"

    def run(x):
        hooks = []
        for m in model.modules():
            if isinstance(m, torch.nn.ReLU):
                m.inplace = False
                hooks.append(m.register_full_backward_hook(
                    lambda mod, gin, gout: (gin[0].clamp(min=0),)))
        try:
            return vanilla(model, x)
        finally:
            for h in hooks:
                h.remove()

    return run, "autograd + ReLU hooks (no captum)"


def gradcam_fn(model, layer):
    target_layer = module(model, layer)
    if pytorch_grad_cam is not None:
        cam = pytorch_grad_cam.GradCAM(model=model, target_layers=[target_layer])

        def run(x):
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(CLASS)] * x.shape[0])

        return run, "pytorch-grad-cam GradCAM"

    def run(x):
        acts = {}
        h = target_layer.register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
        try:
            x = x.detach().requires_grad_(True)
            out = model(x)
            a = acts["a"]
            (g,) = torch.autograd.grad(out[:, CLASS].sum(), a)
            w = g.mean((2, 3), keepdim=True)
            c = torch.relu((w * a).sum(1, keepdim=True))
            c = torch.nn.functional.interpolate(c, size=x.shape[-2:], mode="bilinear",
                                                align_corners=False)
            lo = c.amin((2, 3), keepdim=True)
            hi = c.amax((2, 3), keepdim=True)
            return ((c - lo) / (hi - lo + 1e-7)).cpu()
        finally:
            h.remove()

    return run, "autograd + hooks (no pytorch-grad-cam)"


def smoothgrad_fn(model):
    if captum_attr is not None:
        nt = captum_attr.NoiseTunnel(captum_attr.Saliency(model))

        def run(x, n):
            sd = float(0.15 * (x.max() - x.min()))
            a = nt.attribute(x, nt_type="smoothgrad", nt_samples=n, stdevs=sd, target=CLASS)
            return a.abs().amax(1).cpu()

        return run, "captum NoiseTunnel(Saliency)"

    def run(x, n, chunk=16):
        sd = float(0.15 * (x.max() - x.min()))
        g = torch.Generator(device=x.device).manual_seed(0)
        acc = torch.zeros_like(x)
        for i in range(0, n, chunk):
            k = min(chunk, n - i)
            xs = (x.repeat(k, 1, 1, 1)
                  + sd * torch.randn((k,) + x.shape[1:], generator=g, device=x.device))
            xs.requires_grad_(True)
            (gr,) = torch.autograd.grad(model(xs)[:, CLASS].sum(), xs)
            acc += gr.abs().sum(0, keepdim=True)
        return (acc / n).amax(1).cpu()

    return run, "autograd loop (no captum)"


def scorecam_fn(model, layer, batch):
    target_layer = module(model, layer)
    if pytorch_grad_cam is not None:
        cam = pytorch_grad_cam.ScoreCAM(model=model, target_layers=[target_layer])
        cam.batch_size = batch

        def run(x):
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(CLASS)] * x.shape[0])

        return run, "pytorch-grad-cam ScoreCAM"

    def run(x):
        acts = {}
        h = target_layer.register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
        try:
            with torch.no_grad():
                model(x)
                a = acts["a"]
                up = torch.nn.functional.interpolate(a, size=x.shape[-2:], mode="bilinear",
                                                     align_corners=True)
                lo = up.amin((2, 3), keepdim=True)
                hi = up.amax((2, 3), keepdim=True)
                up = (up - lo) / (hi - lo + 1e-8)
                masked = x[:, None] * up[:, :, None]
                scores = torch.cat([model(masked[0, i:i + batch])[:, CLASS]
                                    for i in range(0, masked.shape[1], batch)])
                w = torch.softmax(scores, 0)
                c = torch.relu((w[None, :, None, None] * a).sum(1))
                return c.cpu()
        finally:
            h.remove()

    return run, "no_grad loop (no pytorch-grad-cam)"


def maximize(model, layer, channels, iters, dev, size=224):
    """keras-vis visualize_activation: see optim.rs's module docs for the formulas."""
    n = len(channels)
    mean = torch.tensor(MEAN, device=dev)[None, :, None, None]
    std = torch.tensor(STD, device=dev)[None, :, None, None]
    g = torch.Generator().manual_seed(0)
    u = (torch.rand((n, 3, size, size), generator=g) * 0.1 - 0.05).to(dev)
    x = (0.5 + u - mean) / std
    lo, hi = (0 - mean) / std, (1 - mean) / std
    cache = torch.zeros_like(x)
    best = x.clone()
    best_loss = torch.full((n,), float("inf"), device=dev)
    idx = torch.tensor(channels, device=dev)
    rows = torch.arange(n, device=dev)
    acts = {}
    h = module(model, layer).register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
    numel = 3 * size * size
    try:
        for _ in range(iters):
            x.requires_grad_(True)
            model(x)
            act = acts["a"][rows, idx].mean((1, 2))
            d1 = x[:, :, 1:, :-1] - x[:, :, :-1, :-1]
            d2 = x[:, :, :-1, 1:] - x[:, :, :-1, :-1]
            tv = (d1 * d1 + d2 * d2).sum((1, 2, 3)) / numel  # beta = 2
            lp = x.abs().pow(6).sum((1, 2, 3)).pow(1 / 6) / numel
            loss = -act + 10 * tv + 10 * lp
            (grad,) = torch.autograd.grad(loss.sum(), x)
            x = x.detach()
            loss = loss.detach()
            grad = grad / (grad.pow(2).mean((1, 2, 3), keepdim=True).sqrt() + 1e-7)
            cache = 0.95 * cache + 0.05 * grad * grad
            x = torch.maximum(torch.minimum(x - grad / (cache + 1e-7).sqrt(), hi), lo)
            better = loss < best_loss
            best = torch.where(better[:, None, None, None], x, best)
            best_loss = torch.where(better, loss, best_loss)
    finally:
        h.remove()
    return best.cpu()


def case_samples(args, case):
    if case in HEAVY and args.heavy_samples > 0:
        return args.heavy_samples
    return args.samples


def torch_case(args, dev, name, model, case, batch):
    """Returns (times, impl) for one case, or None where PyTorch has no counterpart."""
    s = case_samples(args, case)
    shape = (batch, 3, 224, 224)
    if case in CNNVIS_ONLY:
        return None
    x = make_input(shape, dev)
    if case == "forward":
        def fn():
            with torch.no_grad():
                model(x).cpu()
        return time_calls(dev, fn, s), "torch no_grad forward"
    if case == "saliency":
        return time_calls(dev, lambda: vanilla(model, x), s), "autograd"
    if case == "guided":
        run, impl = guided_fn(model)
        return time_calls(dev, lambda: run(x), s), impl
    if case == "gradcam":
        run, impl = gradcam_fn(model, CAM_LAYER[name])
        return time_calls(dev, lambda: run(x), s), impl
    if case == "smoothgrad":
        run, impl = smoothgrad_fn(model)
        n = args.smoothgrad_samples
        return time_calls(dev, lambda: run(x, n), s, warm=lambda: run(x, min(2, n))), impl
    if case == "scorecam":
        run, impl = scorecam_fn(model, CAM_LAYER[name], args.scorecam_batch)
        small = make_input((1, 3, 64, 64), dev)
        return time_calls(dev, lambda: run(x), s, warm=lambda: run(small)), impl
    if case in ("am", "am-filters"):
        chans = [0] if case == "am" else list(range(args.am_filters))
        layer = AM_LAYER[name]
        it = args.am_iters
        return (time_calls(dev, lambda: maximize(model, layer, chans, it, dev), s,
                           warm=lambda: maximize(model, layer, chans, min(2, it), dev)),
                "autograd loop (keras-vis rule)")
    raise ValueError(case)


# ---------------------------------------------------------------- cnnvis subprocess


def find_bench(explicit):
    """The e2e bench binary: --cnnvis, else what `cargo bench --bench e2e --no-run` builds
    (when cargo is here), else the newest target/release/deps/e2e-* or .benchbin/e2e."""
    if explicit:
        return explicit
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if shutil.which("cargo") and os.path.exists(os.path.join(root, "Cargo.toml")):
        env = dict(os.environ)
        env.setdefault("XDG_RUNTIME_DIR", "/tmp")
        r = subprocess.run(["cargo", "bench", "--bench", "e2e", "--no-run"], cwd=root, env=env,
                           capture_output=True, text=True)
        for line in (r.stdout + r.stderr).splitlines():
            if "Executable" in line and "(" in line:
                p = line.rsplit("(", 1)[1].rstrip(")").strip()
                return p if os.path.isabs(p) else os.path.join(root, p)
        sys.stderr.write(r.stderr[-2000:])
    cands = [p for p in glob.glob(os.path.join(root, "target", "release", "deps", "e2e-*"))
             if os.access(p, os.X_OK) and "." not in os.path.basename(p)]
    cands += [p for p in [os.path.join(root, ".benchbin", "e2e")] if os.access(p, os.X_OK)]
    if cands:
        return max(cands, key=os.path.getmtime)
    sys.exit("error: no e2e bench binary found; run `cargo bench --bench e2e --no-run` or "
             "pass --cnnvis PATH")


def cnnvis_case(args, bench, name, case):
    """Runs one case (every batch of --batch; `load` with `first-call` when both are asked
    for, since one loop measures both) in the bench binary; returns its JSON."""
    env = dict(os.environ)
    env.setdefault("XDG_RUNTIME_DIR", "/tmp")
    env.update({
        "CNNVIS_BENCH_SAMPLES": str(case_samples(args, case)),
        "CNNVIS_BENCH_MODELS": name,
        "CNNVIS_BENCH_BATCH": ",".join(map(str, args.batch_list)),
        "CNNVIS_BENCH_AM_ITERS": str(args.am_iters),
        "CNNVIS_BENCH_AM_FILTERS": str(args.am_filters),
        "CNNVIS_BENCH_AM_LAYER": AM_LAYER[name],
        "CNNVIS_BENCH_SMOOTHGRAD_SAMPLES": str(args.smoothgrad_samples),
        "CNNVIS_BENCH_SCORECAM_LAYER": CAM_LAYER[name],
    })
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "e2e.json")
        cases = [case]
        if case == "load" and "first-call" in args.case_list:
            cases.append("first-call")
        r = subprocess.run([bench, name, *cases, "--json", out], env=env,
                           capture_output=True, text=True)
        if args.verbose or r.returncode != 0:
            sys.stdout.write(r.stdout)
            sys.stderr.write(r.stderr)
        if r.returncode != 0 or not os.path.exists(out):
            print(f"  cnnvis {name} {case}: bench exited with {r.returncode}")
            return None
        with open(out) as f:
            return json.load(f)


# ---------------------------------------------------------------- main


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fmt(v):
    return "-" if v is None else f"{v:.4f}"


def main():
    args = parse_args()
    dev = setup_device(args)
    bench = None if (args.no_cnnvis or args.reuse_cnnvis) else find_bench(args.cnnvis)
    dev_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name()
    print(f"torch {torch.__version__} on {args.device} ({dev_name}), threads "
          f"{torch.get_num_threads()}, TF32 {'on' if args.tf32 else 'off'}; captum "
          f"{'yes' if captum_attr else 'NOT importable'}, pytorch-grad-cam "
          f"{'yes' if pytorch_grad_cam else 'NOT importable'}")
    if bench:
        print(f"cnnvis bench: {bench}")
    print(f"samples {args.samples}; batches {args.batch_list}; cases {', '.join(args.case_list)}")
    rows = []
    cnnvis_meta = {}
    load_doc = None
    reused = {}
    if args.reuse_cnnvis:
        with open(args.reuse_cnnvis) as f:
            prev = json.load(f)
        cnnvis_meta = {k: v for k, v in prev.get("cnnvis", {}).items() if k != "bench"}
        for r in prev.get("rows", []):
            if r.get("cnnvis"):
                reused[(r["model"], r["case"], r["batch"])] = r["cnnvis"]
        bench = None
        print(f"cnnvis figures reused from {args.reuse_cnnvis} ({len(reused)} rows)")
    header = (f"{'model':<9} {'case':<14} {'batch':>5} {'torch s':>10} {'cnnvis s':>10} "
              f"{'cnnvis/torch':>12}  torch impl")
    print("\n" + header)
    for name in args.model_list:
        model = None if args.no_torch else make_model(name, dev)
        for case in args.case_list:
            batches = args.batch_list if case in BATCHED else [1]
            tres = {}
            if model is not None:
                for b in batches:
                    b_eff = args.am_filters if case == "am-filters" else b
                    try:
                        r = torch_case(args, dev, name, model, case, b)
                    except Exception as e:  # keep going: one failing case is a table row
                        r = ([], f"error: {type(e).__name__}: {e}"[:120])
                    if r is not None:
                        tres[b_eff] = r
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
            cres = {b: c for (m, k, b), c in reused.items() if m == name and k == case}
            if bench and case == "first-call" and "load" in args.case_list:
                doc = load_doc  # measured with `load`
            elif bench:
                doc = cnnvis_case(args, bench, name, case)
            else:
                doc = None
            if case == "load":
                load_doc = doc
            if doc:
                cnnvis_meta = {k: doc[k] for k in ("device", "adapter", "fma_peak_gflops")}
                for c in doc["cases"]:
                    if c["model"] == name and c["case"] == case:
                        cres[c["batch"]] = c
            for b in sorted(set(tres) | set(cres)):
                times, impl = tres.get(b, ([], "-"))
                tmed = statistics.median(times) if times else None
                c = cres.get(b)
                cmed = c["median_s"] if c else None
                ratio = cmed / tmed if (cmed and tmed) else None
                rows.append({
                    "model": name, "case": case, "batch": b,
                    "torch": {"median_s": tmed, "min_s": min(times) if times else None,
                              "times_s": times, "impl": impl},
                    "cnnvis": c, "ratio": ratio,
                })
                print(f"{name:<9} {case:<14} {b:>5} {fmt(tmed):>10} {fmt(cmed):>10} "
                      f"{'-' if ratio is None else f'{ratio:.2f}':>12}  {impl}", flush=True)
            # After every case, so an interrupted run keeps what it measured.
            write_json(args, dev_name, cnnvis_meta, bench, rows)
        del model
    if args.json:
        print(f"\nwrote {args.json}")


def write_json(args, dev_name, cnnvis_meta, bench, rows):
    if args.json:
        doc = {
            "torch": {"version": torch.__version__, "device": args.device,
                      "device_name": dev_name, "tf32": args.tf32,
                      "threads": torch.get_num_threads(),
                      "captum": captum_attr is not None,
                      "pytorch_grad_cam": pytorch_grad_cam is not None},
            "cnnvis": dict(cnnvis_meta, bench=bench),
            "args": {k: v for k, v in vars(args).items()},
            "rows": rows,
        }
        tmp = args.json + ".part"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
