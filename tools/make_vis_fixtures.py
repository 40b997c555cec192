#!/usr/bin/env python3
"""Make the reference fixtures for cnnvis's saliency and CAM methods (issue 4).

Purpose
    Rebuild the small fixture models (tests/fixtures/<model>.safetensors, builders imported from
    tools/make_fixtures.py), run them in PyTorch (eval mode, float32) on the committed input batch
    of tests/fixtures/<model>.io.safetensors (N=2, already normalised) and record what the
    reference libraries produce for per-image targets:
      - autograd: the vanilla input gradient of each image's target logit;
      - Captum: Saliency (abs=True), GuidedBackprop, Deconvolution, InputXGradient,
        IntegratedGradients (n_steps=16; gausslegendre and riemann_trapezoid; baseline zeros and
        the normalised black image), NoiseTunnel over Saliency(abs=False) with a FIXED noise
        tensor (smoothgrad, smoothgrad_sq, vargrad), Occlusion (window (C,4,4), stride (C,2,2),
        baseline 0);
      - pytorch-grad-cam: GradCAM, GradCAM++, HiResCAM, XGradCAM, LayerCAM, ScoreCAM, EigenCAM
        (low-res map after ReLU before normalisation, and the returned grayscale_cam), the
        activations/gradients at the CAM layer, and guided Grad-CAM.
    Every documented formula is re-implemented here from scratch and asserted equal to the
    libraries' output (so the metadata "notes" describe exactly what the libraries compute).

How to run (from the repository root; CPU only, 1-4 min on 2 busy cores):
    /work/venv/bin/python tools/make_vis_fixtures.py        # needs torch, torchvision,
                                                            # safetensors, captum, grad-cam
    options: --out DIR (default tests/fixtures/vis), --only NAME[,NAME...]
    Tested with captum 0.9.0, grad-cam 1.5.7, torch 2.15, opencv-python-headless 5.0.

What it writes: tests/fixtures/vis/<model>.safetensors for model in vgg11, resnet18, generic.
    All tensors f32 (N = 2 images, [C,H,W] the input shape, K the number of classes):
      input [N,C,H,W], target [N] (class index as f32), logits [N,K]
      grad.vanilla, captum.saliency, captum.guided, captum.deconv, captum.input_x_gradient,
      captum.ig.gausslegendre, captum.ig.riemann_trapezoid (baseline 0),
      captum.ig.gausslegendre.black, captum.ig.riemann_trapezoid.black (baseline black image),
      captum.smoothgrad, captum.smoothgrad_sq, captum.vargrad, captum.occlusion   all [N,C,H,W]
      noise [S=4,N,C,H,W]
      For P in {cam, cam2} (two CAM layers, named by metadata cam_layer / cam2_layer):
        P.<m> [N,h,w], P.<m>.upsampled [N,H,W] for m in gradcam, gradcam++, hirescam,
        xgradcam, layercam, scorecam, eigencam; P.activations, P.gradients [N,k,h,w];
        P.eigencam.projection [N,h,w] (signed, before ReLU); P.eigencam.sign [N].
      guided_gradcam [N,C,H,W] (from cam.gradcam.upsampled; zero where that is zero).
    Metadata: model, cam_layer, cam2_layer, classes, targets, versions, notes (formulas).
    The CAM layer the brief asks for (vgg11 features[-1] = features.20, resnet18 layer4) is
    1x1 at the fixtures' 32x32 input, which makes every normalised/upsampled CAM identically 0;
    `cam2` therefore repeats everything at a layer with spatial extent (features.14: 4x4,
    layer2: 4x4; generic: head.relu 6x6 and block.relu 11x10).
Output is deterministic (fixed seeds, deterministic algorithms, 2 threads).
All nn.ReLU modules are switched to inplace=False before use (same values, avoids in-place
interaction with hooks).
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

torch.set_num_threads(2)
torch.use_deterministic_algorithms(True)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))


def _import_make_fixtures():
    # make_fixtures.py only defines things at import (its main() is behind __name__ guard).
    spec = importlib.util.spec_from_file_location("make_fixtures", os.path.join(HERE,
                                                                             "make_fixtures.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MF = _import_make_fixtures()

import captum  # noqa: E402
import pytorch_grad_cam.base_cam as gc_base  # noqa: E402
from captum.attr import (  # noqa: E402
    Deconvolution, GuidedBackprop, InputXGradient, IntegratedGradients, NoiseTunnel, Occlusion,
    Saliency)
from pytorch_grad_cam import (  # noqa: E402
    EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM, XGradCAM)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
S_NOISE = 4
NOISE_LEVEL = 0.15
IG_STEPS = 16
IG_METHODS = ["gausslegendre", "riemann_trapezoid"]
OCC_WIN, OCC_STRIDE = 4, 2
CAM_METHODS = [("gradcam", GradCAM), ("gradcam++", GradCAMPlusPlus), ("hirescam", HiResCAM),
               ("xgradcam", XGradCAM), ("layercam", LayerCAM), ("scorecam", ScoreCAM),
               ("eigencam", EigenCAM)]

# model: (targets, cam_layer, cam2_layer, mean, std, seed)
MODELS = {
    "vgg11": ([3, 7], "features.20", "features.14", IMAGENET_MEAN, IMAGENET_STD, 411),
    "resnet18": ([3, 7], "layer4", "layer2", IMAGENET_MEAN, IMAGENET_STD, 418),
    "generic": ([3, 1], "head.relu", "block.relu", MF.GENERIC_GRAPH["input"]["mean"],
                MF.GENERIC_GRAPH["input"]["std"], 407),
}

NOTES = r"""
All tensors are w.r.t. the NORMALISED model input `input`; `target` holds one class per image;
every objective is the raw target logit (no softmax).
grad.vanilla = d logit[n,target[n]] / d input[n] (autograd; images independent in eval mode).
captum.saliency = |grad.vanilla|. captum.input_x_gradient = input * grad.vanilla.
captum.guided (GuidedBackprop): backward through every nn.ReLU is g_in = relu(g_out) * [x > 0]
  (x = ReLU input; Captum applies F.relu to the ReLU's own input-gradient). captum.deconv
  (Deconvolution): g_in = relu(g_out) (forward mask ignored). Max pools / convs / BN / linear
  use ordinary gradients. Verified equal to a from-scratch autograd.Function implementation.
captum.ig.<method>[.black]: alphas a_i and weights w_i (i < n, n = 16):
  gausslegendre: a_i = (1 + x_i)/2, w_i = W_i/2 with (x_i, W_i) = numpy leggauss(n) nodes/weights
  (ascending x); riemann_trapezoid: a_i = linspace(0,1,n)[i] (torch float32 linspace then
  python float), w_i = 1/n except w_0 = w_{n-1} = 1/(2n)  [Captum quirk: sum w = 1 - 1/n, NOT 1].
  attr = (x - b) * sum_i w_i * grad(b + a_i (x - b)) where grad is the vanilla target-logit
  gradient; Captum stores w_i as float32 (torch.tensor(list).float()), a_i used as python float.
  b = 0, or (.black) b[c] = (0 - mean[c]) / std[c] broadcast over H, W (mean/std in metadata).
noise: noise[s, n] = randn(C,H,W) * sd[n] with sd[n] = 0.15 * (max(input[n]) - min(input[n]))
  (max/min over all C,H,W of image n; drawn as one torch.randn((S,N,C,H,W), generator seeded
  with metadata noise_seed) * sd). Noisy input s of image n = input[n] + noise[s, n].
captum.smoothgrad = mean_s g_s, captum.smoothgrad_sq = mean_s g_s^2,
  captum.vargrad = mean_s g_s^2 - (mean_s g_s)^2   (Captum's definition, population variance),
  with g_s = grad.vanilla evaluated at input + noise[s] (Saliency abs=False, same target).
  Verified against Captum NoiseTunnel(Saliency) whose NoiseTunnel._add_noise_to_input was
  monkeypatched to return input.repeat_interleave(S, 0) + noise (Captum's batch layout is
  image-major: row n*S + s), nt_samples=S, nt_samples_batch_size=None.
captum.occlusion: window (C,4,4), stride (C,2,2), baseline 0. Window positions per spatial dim:
  top = k*2 for k = 0..ceil((D-4)/2) (the last window is clipped at the border when (D-4) is
  odd). For each window: d = logit_t(x) - logit_t(x with the window set to 0); attr(pixel) =
  sum of d over windows covering the pixel / number of windows covering it (all channels).
CAM (pytorch-grad-cam, ClassifierOutputTarget(target[n]) per image; ONE backward of
  sum_n logit[n, target[n]]; A = cam.activations = output of the cam layer module (forward hook),
  G = cam.gradients = d(sum_n logit[n,t_n])/dA (tensor hook) — per image it is that image's own
  target gradient). Spatial sums/means below are over the h*w positions of one image.
  gradcam:   w_k = mean_hw G_k;                     cam = sum_k w_k A_k
  gradcam++: g2 = G^2, g3 = G^3, sA_k = sum_hw A_k; alpha = g2 / (2*g2 + sA_k*g3 + 1e-6);
             alpha = 0 where G == 0; w_k = sum_hw relu(G_k) * alpha_k;  cam = sum_k w_k A_k
  hirescam:  cam = sum_k G_k * A_k (elementwise)
  xgradcam:  w_k = sum_hw (G_k * A_k) / (sA_k + 1e-7);  cam = sum_k w_k A_k
  layercam:  cam = sum_k relu(G_k) * A_k
  scorecam:  (no gradients) U_k = UpsamplingBilinear2d(size=(H,W))(A)_k, i.e. bilinear with
             align_corners=TRUE; M_k = (U_k - min U_k) / (max U_k - min U_k + 1e-8) (per image,
             per channel, min/max over H*W); score_k = logit_t(input * M_k) (the NORMALISED input
             times the mask, broadcast over C; batches of 16 masks, eval mode, order-independent);
             w = softmax_k(score) (over the k channels, per image);  cam = sum_k w_k A_k
  eigencam:  (no gradients, no targets) per image X = A reshaped [h*w, k] (row = position in
             row-major y*w+x), Xc = X - mean over positions (per channel); U,S,VT = numpy
             np.linalg.svd(Xc, full_matrices=True); cam = Xc @ VT[0] reshaped [h,w].
             NO sign fix (EigenCAM in grad-cam 1.5.7 calls get_2d_projection, not
             get_2d_projection_with_sign_correction), so the sign is LAPACK's arbitrary choice.
             cam.eigencam.projection stores Xc @ VT[0] before ReLU; cam.eigencam.sign[n] = s with
             VT[0] = s * v_canon, where v_canon is the unit top right-singular vector of Xc whose
             largest-|.| component is positive (first such index on ties). A Rust implementation
             computing v_canon reproduces numpy exactly as s * (Xc @ v_canon). If Xc == 0 (1x1
             maps) the projection is 0 and sign is stored as +1.
  cam.<m> = relu(cam)  [N,h,w]  = exactly the array pytorch-grad-cam passes to scale_cam_image
            (captured by wrapping pytorch_grad_cam.base_cam.scale_cam_image).
  cam.<m>.upsampled = grayscale_cam returned by cam(input, targets) =
     scale(relu(resize(scale(cam.<m>))))   where
     scale(img) = (img - min(img)) / (1e-7 + max(img - min(img)))   per image, float32 numpy
              (min/max over the whole map; note: eps added to the max AFTER subtracting min), and
     resize = cv2.resize(img.astype(float32), (W, H)) with default INTER_LINEAR: bilinear,
              half-pixel centres (src = (dst + 0.5) * in/out - 0.5), clamped at the borders
              (== torch F.interpolate(mode='bilinear', align_corners=False) for upscaling,
              verified). Order: normalise FIRST (scale), then resize, then
              aggregate_multi_layers: relu, mean over layers (1 layer here), scale AGAIN.
     For a 1x1 cam layer scale() gives 0, so .upsampled is all zeros (hence cam2).
  guided_gradcam = cam.gradcam.upsampled[:, None] * captum.guided (Captum GuidedBackprop, not
     pytorch-grad-cam's GuidedBackpropReLUModel; the two are identical here because every ReLU
     is an nn.ReLU module).
""".strip()


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def load_model(name):
    build = MF.FIXTURES[name][0]
    torch.manual_seed(0)
    model = build()
    sd = load_file(os.path.join(ROOT, "tests", "fixtures", f"{name}.safetensors"))
    model.load_state_dict(sd)  # f16/bf16 weights are cast to the f32 parameters exactly
    model = model.float().eval()
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    # Parameters keep requires_grad=True: pytorch-grad-cam needs a graph even though its
    # input tensor does not require grad.
    io = load_file(os.path.join(ROOT, "tests", "fixtures", f"{name}.io.safetensors"))
    x = io["input"].float().contiguous()
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(logits, io["logits"], rtol=1e-5, atol=1e-5)
    return model, x, logits


def module_by_name(model, name):
    mods = dict(model.named_modules())
    return mods[name]


def target_logit_sum(model, x, targets):
    out = model(x)
    return out[torch.arange(x.shape[0]), torch.as_tensor(targets)].sum()


def vanilla_grad(model, x, targets):
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(target_logit_sum(model, x, targets), x)
    return g


class _GuidedRelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, deconv):
        ctx.save_for_backward(x)
        ctx.deconv = deconv
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        g = g.clamp_min(0)
        if not ctx.deconv:
            g = g * (x > 0).to(g.dtype)
        return g, None


def manual_modified_relu_grad(model, x, targets, deconv):
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    for m in relus:
        m.forward = (lambda inp, d=deconv: _GuidedRelu.apply(inp, d))
    try:
        return vanilla_grad(model, x, targets)
    finally:
        for m in relus:
            del m.forward


# --------------------------------------------------------------------------------------------
# Captum
# --------------------------------------------------------------------------------------------


def manual_ig(model, x, targets, baseline, method):
    n = IG_STEPS
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        alphas = (0.5 * (1 + nodes)).tolist()
        w = (0.5 * weights).tolist()
    else:
        alphas = torch.linspace(0, 1, n).tolist()
        w = [1 / n] * n
        w[0] /= 2
        w[-1] /= 2
    total = torch.zeros_like(x)
    for a, wi in zip(alphas, w):
        total += torch.tensor(wi).float() * vanilla_grad(model, baseline + a * (x - baseline),
                                                          targets)
    return total * (x - baseline)


def manual_occlusion(model, x, targets):
    N, C, H, W = x.shape
    t = torch.as_tensor(targets)
    with torch.no_grad():
        base = model(x)[torch.arange(N), t]
        total = torch.zeros_like(x)
        count = torch.zeros(1, 1, H, W)
        ys = [k * OCC_STRIDE for k in range(int(np.ceil((H - OCC_WIN) / OCC_STRIDE)) + 1)]
        xs = [k * OCC_STRIDE for k in range(int(np.ceil((W - OCC_WIN) / OCC_STRIDE)) + 1)]
        for y0 in ys:
            for x0 in xs:
                xo = x.clone()
                xo[:, :, y0:y0 + OCC_WIN, x0:x0 + OCC_WIN] = 0
                d = base - model(xo)[torch.arange(N), t]
                total[:, :, y0:y0 + OCC_WIN, x0:x0 + OCC_WIN] += d[:, None, None, None]
                count[:, :, y0:y0 + OCC_WIN, x0:x0 + OCC_WIN] += 1
    return total / count


def close(a, b, what, rtol=1e-4, atol=1e-5):
    a = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).float()
    b = torch.as_tensor(np.asarray(b) if not isinstance(b, torch.Tensor) else b).float()
    scale = max(b.abs().max().item(), 1e-12)
    try:
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol * max(scale, 1.0))
    except AssertionError as e:
        raise AssertionError(f"{what}: {e}") from None


def captum_part(model, x, targets, mean, std, seed, out, meta):
    N, C, H, W = x.shape
    tl = list(targets)
    g = vanilla_grad(model, x, targets)
    out["grad.vanilla"] = g

    sal = Saliency(model).attribute(x.clone(), target=tl, abs=True)
    close(sal, g.abs(), "saliency")
    out["captum.saliency"] = sal

    guided = GuidedBackprop(model).attribute(x.clone(), target=tl)
    close(guided, manual_modified_relu_grad(model, x, targets, deconv=False), "guided")
    out["captum.guided"] = guided
    deconv = Deconvolution(model).attribute(x.clone(), target=tl)
    close(deconv, manual_modified_relu_grad(model, x, targets, deconv=True), "deconv")
    out["captum.deconv"] = deconv

    ixg = InputXGradient(model).attribute(x.clone(), target=tl)
    close(ixg, x * g, "input_x_gradient")
    out["captum.input_x_gradient"] = ixg

    black = ((0 - torch.tensor(mean)) / torch.tensor(std)).view(1, C, 1, 1).expand(N, C, H, W)
    black = black.contiguous()
    ig = IntegratedGradients(model)
    for method in IG_METHODS:
        for suffix, b in (("", torch.zeros_like(x)), (".black", black)):
            a = ig.attribute(x.clone(), baselines=b, target=tl, n_steps=IG_STEPS, method=method)
            close(a, manual_ig(model, x, targets, b, method), f"ig {method}{suffix}")
            out[f"captum.ig.{method}{suffix}"] = a

    # NoiseTunnel with a fixed noise tensor.
    gen = torch.Generator().manual_seed(seed)
    sd = NOISE_LEVEL * (x.flatten(1).max(1).values - x.flatten(1).min(1).values)
    noise = torch.randn((S_NOISE, N, C, H, W), generator=gen) * sd.view(1, N, 1, 1, 1)
    out["noise"] = noise
    grads = torch.stack([vanilla_grad(model, x + noise[s], targets) for s in range(S_NOISE)])
    e1, e2 = grads.mean(0), (grads * grads).mean(0)
    manual = {"smoothgrad": e1, "smoothgrad_sq": e2, "vargrad": e2 - e1 * e1}

    orig = NoiseTunnel._add_noise_to_input

    def fixed_noise(inp, stdev, nt_samples_partition):
        assert nt_samples_partition == S_NOISE and inp.shape == x.shape
        # Captum layout: row n*S + s (repeat_interleave), so noise goes image-major.
        return inp.repeat_interleave(S_NOISE, dim=0) + noise.transpose(0, 1).reshape(
            (N * S_NOISE, C, H, W))

    NoiseTunnel._add_noise_to_input = staticmethod(fixed_noise)
    try:
        nt = NoiseTunnel(Saliency(model))
        for kind in ("smoothgrad", "smoothgrad_sq", "vargrad"):
            a = nt.attribute(x.clone(), nt_type=kind, nt_samples=S_NOISE, stdevs=1.0,
                             target=tl, abs=False)
            close(a, manual[kind], f"noise tunnel {kind}")
            out[f"captum.{kind}"] = a
    finally:
        NoiseTunnel._add_noise_to_input = orig
    meta["noise_seed"] = str(seed)
    meta["noise_stdev"] = json.dumps([float(v) for v in sd])

    occ = Occlusion(model).attribute(x.clone(), sliding_window_shapes=(C, OCC_WIN, OCC_WIN),
                                     strides=(C, OCC_STRIDE, OCC_STRIDE), baselines=0,
                                     target=tl)
    close(occ, manual_occlusion(model, x, targets), "occlusion")
    out["captum.occlusion"] = occ


# --------------------------------------------------------------------------------------------
# pytorch-grad-cam
# --------------------------------------------------------------------------------------------


def np_scale(cams):
    res = []
    for img in cams:
        img = img - np.min(img)
        img = img / (1e-7 + np.max(img))
        res.append(img)
    return np.float32(res)


def manual_upsample(low, H, W):
    s = np_scale(low)
    r = F.interpolate(torch.from_numpy(s)[:, None], size=(H, W), mode="bilinear",
                      align_corners=False)[:, 0].numpy()
    return np_scale(np.maximum(r, 0))


def canon_sign(xc, vt0):
    """s with vt0 = s * v_canon (v_canon: largest-|.| component positive)."""
    if not np.any(xc):
        return 1.0
    i = int(np.argmax(np.abs(vt0)))
    return 1.0 if vt0[i] > 0 else -1.0


def manual_cam(method, A, G, model, x, targets):
    """Re-implementation of the low-res CAM (after ReLU) from A, G [N,k,h,w] (float32 numpy)."""
    sA = A.sum(axis=(2, 3), keepdims=True)
    if method == "gradcam":
        cam = (G.mean(axis=(2, 3))[:, :, None, None] * A).sum(1)
    elif method == "gradcam++":
        g2 = G ** 2
        g3 = g2 * G
        alpha = g2 / (2 * g2 + sA * g3 + 1e-6)
        alpha = np.where(G != 0, alpha, 0)
        w = (np.maximum(G, 0) * alpha).sum(axis=(2, 3))
        cam = (w[:, :, None, None] * A).sum(1)
    elif method == "hirescam":
        cam = (G * A).sum(1)
    elif method == "xgradcam":
        w = (G * A / (sA + 1e-7)).sum(axis=(2, 3))
        cam = (w[:, :, None, None] * A).sum(1)
    elif method == "layercam":
        cam = (np.maximum(G, 0) * A).sum(1)
    elif method == "scorecam":
        N, k = A.shape[:2]
        H, W = x.shape[-2:]
        with torch.no_grad():
            U = F.interpolate(torch.from_numpy(A), size=(H, W), mode="bilinear",
                              align_corners=True)
            mx = U.flatten(2).max(-1).values[:, :, None, None]
            mn = U.flatten(2).min(-1).values[:, :, None, None]
            M = (U - mn) / (mx - mn + 1e-8)
            scores = torch.stack([model(x[n][None] * M[n][:, None])[:, targets[n]]
                                  for n in range(N)])
            w = torch.softmax(scores, dim=-1).numpy()
        cam = (w[:, :, None, None] * A).sum(1)
    elif method == "eigencam":
        cams = []
        for a in A:
            X = a.reshape(a.shape[0], -1).T
            Xc = X - X.mean(axis=0)
            _, _, VT = np.linalg.svd(Xc, full_matrices=True)
            cams.append((Xc @ VT[0]).reshape(a.shape[1:]))
        cam = np.float32(cams)
    return np.maximum(cam, 0)


def cam_part(model, x, targets, layer_name, prefix, out, meta, guided):
    N, C, H, W = x.shape
    layer = module_by_name(model, layer_name)
    tgts = [ClassifierOutputTarget(int(t)) for t in targets]

    captured = []
    orig_scale = gc_base.scale_cam_image

    def spy(cam, target_size=None):
        if target_size is not None:
            captured.append(np.array(cam, dtype=np.float32, copy=True))
        return orig_scale(cam, target_size)

    gc_base.scale_cam_image = spy
    try:
        A = G = None
        for key, cls in CAM_METHODS:
            captured.clear()
            with cls(model=model, target_layers=[layer]) as cam:
                if key == "scorecam":
                    cam.batch_size = 16
                up = cam(input_tensor=x.clone(), targets=tgts)
                if key == "gradcam":
                    A = cam.activations_and_grads.activations[0].numpy().copy()
                    G = cam.activations_and_grads.gradients[0].numpy().copy()
                if key == "eigencam":
                    A_e = cam.activations_and_grads.activations[0].numpy().copy()
            assert len(captured) == 1, key
            low = captured[0]
            out[f"{prefix}.{key}"] = torch.from_numpy(low)
            out[f"{prefix}.{key}.upsampled"] = torch.from_numpy(np.float32(up))
            # cross-checks of the documented formulas
            close(low, manual_cam(key, A, G, model, x, targets), f"{prefix} {key} low-res")
            close(up, manual_upsample(low, H, W), f"{prefix} {key} upsampled", atol=1e-5)
    finally:
        gc_base.scale_cam_image = orig_scale

    out[f"{prefix}.activations"] = torch.from_numpy(A)
    out[f"{prefix}.gradients"] = torch.from_numpy(G)
    np.testing.assert_array_equal(A, A_e)

    # activations / gradients independently with plain hooks
    acts = {}

    def hook(_m, _i, o):
        acts["a"] = o
        o.retain_grad()

    h = layer.register_forward_hook(hook)
    try:
        xx = x.clone().requires_grad_(True)
        target_logit_sum(model, xx, targets).backward()
    finally:
        h.remove()
    close(A, acts["a"].detach(), f"{prefix} activations")
    close(G, acts["a"].grad, f"{prefix} gradients")

    # EigenCAM projection and sign
    projs, signs = [], []
    for a in A:
        X = a.reshape(a.shape[0], -1).T
        Xc = X - X.mean(axis=0)
        _, _, VT = np.linalg.svd(Xc, full_matrices=True)
        projs.append((Xc @ VT[0]).reshape(a.shape[1:]))
        signs.append(canon_sign(Xc, VT[0]))
    projs = np.float32(projs)
    close(np.maximum(projs, 0), out[f"{prefix}.eigencam"], f"{prefix} eigen projection")
    out[f"{prefix}.eigencam.projection"] = torch.from_numpy(projs)
    out[f"{prefix}.eigencam.sign"] = torch.tensor(signs, dtype=torch.float32)

    if prefix == "cam":  # (a cam2 twin would push the directory over 1.5 MB)
        out["guided_gradcam"] = out[f"{prefix}.gradcam.upsampled"][:, None] * guided
    shape = tuple(A.shape)
    return shape


# --------------------------------------------------------------------------------------------


def write_safetensors(path, tensors, meta):
    """Byte-deterministic safetensors writer (f32 only).

    safetensors' own save_file serialises the metadata map in a random (hash) order, so two
    runs give different bytes; here the header has sorted keys and the data follows in name order.
    """
    header = {"__metadata__": dict(sorted(meta.items()))}
    blobs, off = [], 0
    for k in sorted(tensors):
        a = tensors[k].detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[k] = {"dtype": "F32", "shape": list(tensors[k].shape),
                     "data_offsets": [off, off + len(a)]}
        blobs.append(a)
        off += len(a)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for a in blobs:
            f.write(a)


def make(name, out_dir):
    targets, cam_layer, cam2_layer, mean, std, seed = MODELS[name]
    torch.manual_seed(seed)
    model, x, logits = load_model(name)
    out = {"input": x, "target": torch.tensor(targets, dtype=torch.float32), "logits": logits}
    meta = {"model": name, "cam_layer": cam_layer, "cam2_layer": cam2_layer,
            "targets": json.dumps(targets), "mean": json.dumps(mean), "std": json.dumps(std),
            "versions": f"torch {torch.__version__}, captum {captum.__version__}, "
                        f"grad-cam {importlib.metadata.version('grad-cam')}, "
                        f"numpy {np.__version__}",
            "ig_n_steps": str(IG_STEPS), "noise_samples": str(S_NOISE),
            "occlusion": "window (C,4,4) stride (C,2,2) baseline 0",
            "notes": NOTES}
    captum_part(model, x, targets, mean, std, seed, out, meta)
    shapes = {}
    for prefix, layer in (("cam", cam_layer), ("cam2", cam2_layer)):
        shapes[prefix] = cam_part(model, x, targets, layer, prefix, out, meta,
                                  out["captum.guided"])
    meta["cam_shape"] = json.dumps(shapes["cam"])
    meta["cam2_shape"] = json.dumps(shapes["cam2"])
    # sanity: the logits we store are the fixture's
    for k, v in out.items():
        assert v.dtype == torch.float32, k
        assert torch.isfinite(v).all(), k
    path = os.path.join(out_dir, f"{name}.safetensors")
    write_safetensors(path, out, meta)
    back = load_file(path)
    assert back.keys() == out.keys() and all(torch.equal(back[k], out[k]) for k in out)
    return path, out, shapes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "vis"))
    ap.add_argument("--only", default="", help="comma-separated model names")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    names = [n for n in args.only.split(",") if n] or list(MODELS)
    import warnings
    warnings.filterwarnings("ignore")
    import logging
    logging.disable(logging.WARNING)
    for n in names:
        path, out, shapes = make(n, args.out)
        print(f"{n:<9} {os.path.getsize(path):>8} B  {len(out)} tensors  cam {shapes['cam']} "
              f"cam2 {shapes['cam2']}  eigen sign cam {out['cam.eigencam.sign'].tolist()} "
              f"cam2 {out['cam2.eigencam.sign'].tolist()}")
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"total size of {os.path.relpath(args.out, ROOT)}: {total} bytes "
          f"({total / 2**20:.3f} MiB)")
    if total >= 1_500_000:
        print("ERROR: vis fixtures exceed 1.5 MB", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
