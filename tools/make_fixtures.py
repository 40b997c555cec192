#!/usr/bin/env python3
"""Make the small model fixtures that cnnvis's model tests compare against.

Purpose
    For every model family cnnvis loads (VGG with and without batch norm, AlexNet, ResNet with
    BasicBlock and Bottleneck, and the generic `cnnvis.graph/1` JSON format) build a small
    random-weight model with the SAME topology and the SAME state_dict tensor names as
    torchvision, but reduced width, run it in PyTorch (eval mode), and save
      - the weights, exactly as PyTorch names them, and
      - an input batch, the logits and a few intermediate activations (forward hooks),
    so the Rust side can load the weights, run the same input and compare.

    The batch norms get non-trivial running statistics (running_mean ~ N(0, 0.5),
    running_var ~ U(0.5, 2), weight ~ U(0.5, 1.5), bias ~ N(0, 0.2)); convs and linears get a
    fan-in-scaled (Kaiming) init and small random biases, then one data-dependent rescaling pass
    (one scalar per conv/linear, on a separate calibration batch) so activations stay O(1)
    through the depth despite the random BN statistics. One fixture stores its weights as float16 (resnet18), one as bfloat16 (alexnet): their
    parameters are rounded to that dtype BEFORE PyTorch runs, so the reference outputs belong to
    exactly the stored values.

    For the reduced-width models this script asserts that the same builder at full width gives
    state_dict keys and shapes identical to torchvision's own model (checked on the meta device,
    so it costs no memory).  The generic fixture is additionally re-run by a small Python
    interpreter of its cnnvis.graph/1 JSON (tools-side twin of the Rust loader), which must use
    every tensor and reproduce the module's outputs.

How to run (from the repository root; CPU only, ~10 s):
    /work/venv/bin/python tools/make_fixtures.py            # or any Python with torch,
                                                            # torchvision, safetensors
    options: --out DIR (default tests/fixtures), --only NAME[,NAME...]

What it writes (under tests/fixtures/):
    <name>.safetensors     the state_dict (num_batches_tracked int64 included where torchvision
                           has it); metadata {"cnnvis.arch": "<torchvision arch>"} for the
                           torchvision families, {"cnnvis.graph": "<json>"} for `generic`.
    <name>.io.safetensors  f32 tensors `input` [N,C,H,W], `logits` [N,classes] and
                           `act.<layer>` for the recorded layers; metadata
                           {"layers": "<comma-separated layer names>"}.
    for name in vgg11, vgg11_bn, vgg16, alexnet, resnet18, resnet50, generic.
    maximize.safetensors   activation-maximization optimizer fidelity (`--only maximize`,
                           needs vgg11.safetensors): see `make_maximize`.
Output is deterministic (fixed seeds, deterministic algorithms, 2 threads).
"""

import argparse
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models import vgg as tv_vgg
from safetensors.torch import save_file

torch.set_num_threads(2)
torch.use_deterministic_algorithms(True)

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}

# --------------------------------------------------------------------------------------------
# Builders with torchvision's module names and a width parameter
# --------------------------------------------------------------------------------------------


def build_vgg(cfg_key, batch_norm, div, hidden, num_classes):
    """torchvision's VGG class with cfg widths divided by `div` and classifier hidden `hidden`.

    torchvision hardcodes the classifier as Linear(512*7*7, 4096), ReLU, Dropout,
    Linear(4096, 4096), ReLU, Dropout, Linear(4096, classes); it is replaced by the same
    Sequential with the reduced sizes, so the names (classifier.0/3/6) stay identical.
    """
    cfg = [v if v == "M" else v // div for v in tv_vgg.cfgs[cfg_key]]
    features = tv_vgg.make_layers(cfg, batch_norm=batch_norm)
    model = tv_vgg.VGG(features, num_classes=num_classes, init_weights=False)
    last = [v for v in cfg if v != "M"][-1]
    model.classifier = nn.Sequential(
        nn.Linear(last * 7 * 7, hidden),
        nn.ReLU(True),
        nn.Dropout(),
        nn.Linear(hidden, hidden),
        nn.ReLU(True),
        nn.Dropout(),
        nn.Linear(hidden, num_classes),
    )
    return model


class AlexNet(nn.Module):
    """Copy of torchvision.models.AlexNet with every width divided by `div`."""

    def __init__(self, div=1, hidden=4096, num_classes=1000, dropout=0.5):
        super().__init__()
        c1, c2, c3, c4 = 64 // div, 192 // div, 384 // div, 256 // div
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c4, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(c4 * 6 * 6, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def conv3x3(inp, out, stride=1):
    return nn.Conv2d(inp, out, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(inp, out, stride=1):
    return nn.Conv2d(inp, out, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock (groups=1, base_width=64, dilation=1)."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """torchvision.models.resnet.Bottleneck (ResNet V1.5: the stride sits on the 3x3 conv2)."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        width = planes  # base_width 64, groups 1
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """Minimal copy of torchvision.models.resnet.ResNet with a base width parameter."""

    def __init__(self, block, layers, width=64, num_classes=1000):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class Add(nn.Module):
    def forward(self, a, b):
        return a + b


class GenericNet(nn.Module):
    """The `generic` fixture: a small CNN touching every op of cnnvis.graph/1.

    Its forward must match GENERIC_GRAPH below (checked by run_graph in main()).
    """

    def __init__(self, num_classes=5):
        super().__init__()
        self.stem = nn.ModuleDict(
            {
                "conv": nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
                "bn": nn.BatchNorm2d(8),
                "relu": nn.ReLU(),
            }
        )
        self.block = nn.ModuleDict(
            {
                "conv_a": nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2, bias=True),
                "relu_a": nn.ReLU(),
                "conv_b": nn.Conv2d(8, 8, 3, padding=1, bias=True),
                "add": Add(),
                "bn": nn.BatchNorm2d(8, eps=1e-3),
                "relu": nn.ReLU(),
            }
        )
        self.pool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.head = nn.ModuleDict(
            {
                "conv": nn.Conv2d(8, 16, (3, 1), padding=(1, 0), bias=True),
                "relu": nn.ReLU(),
                "id": nn.Identity(),
                "avg": nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
            }
        )
        self.gap = nn.AdaptiveAvgPool2d((2, 3))
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(16 * 2 * 3, 32)
        self.fc1_relu = nn.ReLU()
        self.drop = nn.Dropout(0.3)
        self.fc2 = nn.Linear(32, num_classes)

    def forward(self, x):
        s = self.stem["relu"](self.stem["bn"](self.stem["conv"](x)))
        b = self.block["relu_a"](self.block["conv_a"](s))
        b = self.block["conv_b"](b)
        b = self.block["add"](b, s)
        b = self.block["relu"](self.block["bn"](b))
        h = self.pool(b)
        h = self.head["id"](self.head["relu"](self.head["conv"](h)))
        h = self.head["avg"](h)
        h = self.flatten(self.gap(h))
        h = self.drop(self.fc1_relu(self.fc1(h)))
        return self.fc2(h)


GENERIC_GRAPH = {
    "format": "cnnvis.graph/1",
    "arch": "cnnvis-generic-fixture",
    "input": {
        "channels": 3,
        "height": 21,
        "width": 19,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    },
    "classes": ["cat", "dog", "bird", "fish", "frog"],
    "layers": [
        {"name": "stem.conv", "op": "conv2d", "stride": 2, "padding": 1},
        {"name": "stem.bn", "op": "batchnorm2d", "eps": 1e-5},
        {"name": "stem.relu", "op": "relu"},
        {"name": "block.conv_a", "op": "conv2d", "padding": 2, "dilation": 2, "groups": 2},
        {"name": "block.relu_a", "op": "relu"},
        {"name": "block.conv_b", "op": "conv2d", "padding": [1, 1], "stride": [1, 1]},
        {"name": "block.add", "op": "add", "inputs": ["block.conv_b", "stem.relu"]},
        {"name": "block.bn", "op": "batchnorm2d", "eps": 1e-3},
        {"name": "block.relu", "op": "relu"},
        {"name": "pool", "op": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1,
         "ceil_mode": True},
        {"name": "head.conv", "op": "conv2d", "padding": [1, 0]},
        {"name": "head.relu", "op": "relu"},
        {"name": "head.id", "op": "identity"},
        {"name": "head.avg", "op": "avgpool2d", "kernel": 3, "stride": 2, "padding": 1,
         "count_include_pad": False},
        {"name": "gap", "op": "adaptive_avgpool2d", "output": [2, 3]},
        {"name": "flatten", "op": "flatten"},
        {"name": "fc1", "op": "linear"},
        {"name": "fc1_relu", "op": "relu"},
        {"name": "drop", "op": "dropout"},
        {"name": "fc2", "op": "linear"},
    ],
    "output": "fc2",
}


def run_graph(graph, tensors, x):
    """Reference interpreter of cnnvis.graph/1 (mirrors the spec in the Rust loader).

    Returns ({layer name: output}, set of tensor names used)."""
    used = set()

    def get(name):
        if name not in tensors:
            raise KeyError(f"missing tensor {name}")
        used.add(name)
        return tensors[name].float()

    def opt_bias(layer, n):
        if "bias" in layer:
            return get(layer["bias"])
        return get(n + ".bias") if n + ".bias" in tensors else None

    def pair(v):
        return tuple(v) if isinstance(v, (list, tuple)) else (v, v)

    vals = {"input": x}
    prev = "input"
    for L in graph["layers"]:
        n, op = L["name"], L["op"]
        ins = [vals[i] for i in L.get("inputs", [prev])]
        a = ins[0]
        if op == "conv2d":
            y = F.conv2d(a, get(L.get("weight", n + ".weight")), opt_bias(L, n),
                         pair(L.get("stride", 1)), pair(L.get("padding", 0)),
                         pair(L.get("dilation", 1)), L.get("groups", 1))
        elif op == "batchnorm2d":
            y = F.batch_norm(a, get(L.get("running_mean", n + ".running_mean")),
                             get(L.get("running_var", n + ".running_var")),
                             get(L.get("weight", n + ".weight")), get(L.get("bias", n + ".bias")),
                             False, 0.0, L.get("eps", 1e-5))
        elif op == "relu":
            y = F.relu(a)
        elif op == "maxpool2d":
            k = pair(L["kernel"])
            y = F.max_pool2d(a, k, pair(L.get("stride", L["kernel"])), pair(L.get("padding", 0)),
                             pair(L.get("dilation", 1)), L.get("ceil_mode", False))
        elif op == "avgpool2d":
            k = pair(L["kernel"])
            y = F.avg_pool2d(a, k, pair(L.get("stride", L["kernel"])), pair(L.get("padding", 0)),
                             L.get("ceil_mode", False), L.get("count_include_pad", True))
        elif op == "adaptive_avgpool2d":
            y = F.adaptive_avg_pool2d(a, pair(L["output"]))
        elif op == "flatten":
            y = torch.flatten(a, 1)
        elif op in ("dropout", "identity"):
            y = a
        elif op == "linear":
            y = F.linear(a, get(L.get("weight", n + ".weight")), opt_bias(L, n))
        elif op == "add":
            assert len(ins) == 2 and ins[0].shape == ins[1].shape
            y = ins[0] + ins[1]
        else:
            raise ValueError(f"unknown op {op}")
        vals[n] = y
        prev = n
    return vals, used


# --------------------------------------------------------------------------------------------
# Weight init, low-precision rounding, recording
# --------------------------------------------------------------------------------------------


def init_weights(model, gen):
    """Kaiming (fan-in) init for convs/linears, small random biases, random BN statistics."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    last_linear = linears[-1] if linears else None
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.weight
                fan_in = w[0].numel()
                # ReLU gain sqrt(2) everywhere except the logits layer (gain 1).
                gain = 1.0 if m is last_linear else 2.0 ** 0.5
                w.copy_(torch.randn(w.shape, generator=gen) * (gain / fan_in ** 0.5))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
                m.num_batches_tracked.fill_(1000)


def calibrate(model, x, logits_rms=2.0):
    """Data-dependent rescaling (LSUV-style, one scalar per layer), keeping BN stats as drawn.

    Random running statistics do not match the real statistics of a random network, so
    without this a ResNet's residual stream grows block after block (max|act| in the
    hundreds for resnet50). One eval-mode pass over a calibration batch (not the recorded
    input): each conv/linear output is measured where it is produced, its weight and bias are
    scaled so the output has RMS 1 (`logits_rms` for the last linear), and the rescaled output
    flows on, so every later layer is calibrated on the already-rescaled inputs.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    last_linear = linears[-1] if linears else None
    hooks = []

    def hook(m, _inp, out):
        target = logits_rms if m is last_linear else 1.0
        s = target / out.pow(2).mean().sqrt().clamp_min(1e-12)
        m.weight.mul_(s)
        if m.bias is not None:
            m.bias.mul_(s)
        return out * s

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()


def round_to(model, dtype):
    """Round every floating parameter/buffer to `dtype` and back (values become exact)."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.copy_(t.to(dtype).float())


def state_dict_for_file(model, dtype):
    out = {}
    for k, v in model.state_dict().items():
        v = v.detach()
        if v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.contiguous().clone()
    return out


def record(model, x, layers):
    """Run model(x) with forward hooks on `layers`; returns (logits, {layer: activation})."""
    mods = dict(model.named_modules())
    acts = {}
    hooks = []
    for name in layers:
        if name not in mods:
            raise KeyError(f"no module {name}")

        def hook(_m, _inp, out, name=name):
            assert name not in acts, f"module {name} ran twice"
            acts[name] = out.detach().float().clone()  # clone: later in-place ReLUs

        hooks.append(mods[name].register_forward_hook(hook))
    with torch.no_grad():
        logits = model(x).float()
    for h in hooks:
        h.remove()
    missing = [n for n in layers if n not in acts]
    assert not missing, f"hooks never fired: {missing}"
    return logits, acts


def sd_signature(model):
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def check_names():
    """Each builder at full width must reproduce torchvision's state_dict keys and shapes."""
    tvm = torchvision.models
    with torch.device("meta"):
        pairs = [
            ("vgg11", build_vgg("A", False, 1, 4096, 1000), tvm.vgg11()),
            ("vgg11_bn", build_vgg("A", True, 1, 4096, 1000), tvm.vgg11_bn()),
            ("vgg16", build_vgg("D", False, 1, 4096, 1000), tvm.vgg16()),
            ("alexnet", AlexNet(), tvm.alexnet()),
            ("resnet18", ResNet(BasicBlock, [2, 2, 2, 2]), tvm.resnet18()),
            ("resnet50", ResNet(Bottleneck, [3, 4, 6, 3]), tvm.resnet50()),
        ]
        for name, ours, ref in pairs:
            a, b = sd_signature(ours), sd_signature(ref)
            assert a == b, f"{name}: state_dict differs from torchvision's:\n{a}\n{b}"
            # Same check for the module tree (names used by the hooks / the Rust side).
            ma = [(n, type(m).__name__) for n, m in ours.named_modules()]
            mb = [(n, type(m).__name__) for n, m in ref.named_modules()]
            assert ma == mb, f"{name}: module tree differs from torchvision's"
    print("builders at full width match torchvision state_dict keys/shapes and module trees")


def vgg_layers(model):
    """First relu, first pool, a mid relu and last pool of features + avgpool/classifier."""
    relus = [f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.ReLU)]
    pools = [f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
    return [relus[0], pools[0], relus[len(relus) // 2], pools[-1], "avgpool", "classifier.1",
            "classifier.6"]


RESNET_LAYERS = ["relu", "maxpool", "layer1.0", "layer2", "layer3.1", "layer4", "avgpool", "fc"]

# name: (builder, arch metadata, weight dtype, input shape, seed)
FIXTURES = {
    "vgg11": (lambda: build_vgg("A", False, 16, 64, 10), "vgg11", "f32", (2, 3, 32, 32), 11),
    "vgg11_bn": (lambda: build_vgg("A", True, 16, 64, 10), "vgg11_bn", "f32", (2, 3, 32, 32), 12),
    "vgg16": (lambda: build_vgg("D", False, 16, 64, 10), "vgg16", "f32", (2, 3, 32, 32), 16),
    "alexnet": (lambda: AlexNet(div=8, hidden=64, num_classes=10), "alexnet", "bf16",
                (2, 3, 64, 64), 21),
    "resnet18": (lambda: ResNet(BasicBlock, [2, 2, 2, 2], width=8, num_classes=10), "resnet18",
                 "f16", (2, 3, 32, 32), 18),
    "resnet50": (lambda: ResNet(Bottleneck, [3, 4, 6, 3], width=8, num_classes=10), "resnet50",
                 "f32", (2, 3, 32, 32), 50),
    "generic": (lambda: GenericNet(num_classes=5), None, "f32", (2, 3, 21, 19), 7),
}


def layers_for(name, model):
    if name.startswith("vgg"):
        return vgg_layers(model)
    if name == "alexnet":
        return ["features.2", "features.11", "avgpool", "classifier.5"]
    if name.startswith("resnet"):
        return RESNET_LAYERS
    if name == "generic":
        return ["stem.relu", "block.add", "block.bn", "pool", "gap"]
    raise KeyError(name)


def make(name, out_dir):
    build, arch, dt, in_shape, seed = FIXTURES[name]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build()
    init_weights(model, gen)
    model.eval()
    calibrate(model, torch.randn((8,) + tuple(in_shape[1:]), generator=gen))
    dtype = DTYPES[dt]
    if dtype != torch.float32:
        round_to(model, dtype)
    x = torch.randn(in_shape, generator=gen)
    layers = layers_for(name, model)
    logits, acts = record(model, x, layers)

    if name == "generic":
        meta = {"cnnvis.graph": json.dumps(GENERIC_GRAPH)}
        sd = {k: v for k, v in model.state_dict().items()}
        vals, used = run_graph(GENERIC_GRAPH, sd, x)
        unused = [k for k in sd if k not in used and not k.endswith("num_batches_tracked")]
        assert not unused, f"graph leaves tensors unused: {unused}"
        torch.testing.assert_close(vals[GENERIC_GRAPH["output"]], logits, rtol=1e-5, atol=1e-5)
        for n, a in acts.items():
            torch.testing.assert_close(vals[n], a, rtol=1e-5, atol=1e-5)
    else:
        meta = {"cnnvis.arch": arch}

    weights = state_dict_for_file(model, dtype)
    wpath = os.path.join(out_dir, f"{name}.safetensors")
    save_file(weights, wpath, metadata=meta)

    io = {"input": x.contiguous(), "logits": logits.contiguous()}
    for n in layers:
        io[f"act.{n}"] = acts[n].contiguous()
    iopath = os.path.join(out_dir, f"{name}.io.safetensors")
    save_file(io, iopath, metadata={"layers": ",".join(layers)})

    params = sum(p.numel() for p in model.parameters())
    return {
        "name": name,
        "dtype": dt,
        "params": params,
        "w_bytes": os.path.getsize(wpath),
        "io_bytes": os.path.getsize(iopath),
        "max_logit": logits.abs().max().item(),
        "layers": layers,
        "act_max": {n: acts[n].abs().max().item() for n in layers},
        "shapes": {n: tuple(acts[n].shape) for n in layers},
    }


IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
PIXEL_RANGE = 255.0


def keras_tv(u, beta=2.0):
    """keras-vis TotalVariation per image: sum over n-th image of
    ((u[i+1,j]-u[i,j])^2 + (u[i,j+1]-u[i,j])^2)^(beta/2) on [:-1, :-1], / (C*H*W)."""
    base = u[:, :, :-1, :-1]
    d = (u[:, :, 1:, :-1] - base) ** 2 + (u[:, :, :-1, 1:] - base) ** 2
    return d.pow(beta / 2).flatten(1).sum(1) / u[0].numel()


def keras_lp(u, p=6.0):
    """keras-vis LPNorm per image: (sum |u|^p)^(1/p) / (C*H*W)."""
    return u.abs().pow(p).flatten(1).sum(1).pow(1.0 / p) / u[0].numel()


def maximize_run(model, x0, score_fn, optimizer, iterations, tv_w=10.0, lp_w=10.0):
    """A from-scratch re-implementation of cnnvis's pixel-space activation maximization
    (keras-vis's Optimizer.minimize without input modifiers), batch-wise with per-image losses.

    The variable is u = 255 * std[c] * x (pixel units centred on the mean pixel); the model
    sees x = u / (255 std). loss[n] = -score[n] + tv_w * TV(u[n]) + lp_w * Lp(u[n]).
    keras: g <- g / (sqrt(mean g^2) + 1e-7) per image; cache = .95 cache + .05 g^2;
    u += -g / sqrt(cache + 1e-7). adam: torch.optim.Adam(lr = 0.05 * 255) on the raw gradient.
    After every update u is clipped to [-255 mean, 255 (1 - mean)]. Returns the model-space
    images after each iteration [T,N,C,H,W] and the (pre-update) losses [T,N]."""
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    lo, hi = -PIXEL_RANGE * mean, PIXEL_RANGE * (1 - mean)
    u = (x0 * PIXEL_RANGE * std).clone().requires_grad_(True)
    cache = torch.zeros_like(u)
    adam = torch.optim.Adam([u], lr=0.05 * PIXEL_RANGE) if optimizer == "adam" else None
    images, losses = [], []
    for _ in range(iterations):
        x = u / (PIXEL_RANGE * std)
        loss = -score_fn(model, x) + tv_w * keras_tv(u) + lp_w * keras_lp(u)
        (g,) = torch.autograd.grad(loss.sum(), u)
        with torch.no_grad():
            if adam is None:
                rms = g.pow(2).flatten(1).mean(1).sqrt().view(-1, 1, 1, 1)
                g = g / (rms + 1e-7)
                cache = 0.95 * cache + 0.05 * g * g
                u += -g / torch.sqrt(cache + 1e-7)
            else:
                u.grad = g
                adam.step()
            u.copy_(torch.maximum(torch.minimum(u, hi), lo))
            images.append((u / (PIXEL_RANGE * std)).clone())
            losses.append(loss.detach().clone())
    return torch.stack(images), torch.stack(losses)


def make_maximize(out_dir):
    """Optimizer fidelity for activation maximization on the vgg11 fixture (32x32 RGB,
    ImageNet mean/std): 5 iterations, no random transforms, from a fixed seed input.
      keras.*: keras-vis's RMSProp rule, class-logit targets [3, 7] (layer classifier.6);
      adam.*:  Adam lr 0.05 (x 255 pixel units), filter targets: channels [2, 11] of
               features.7 (ReLU, spatial mean).
    Both with keras-vis's default regularizer weights (TV beta 2 weight 10, Lp p 6 weight 10).
    Tensors: seed [2,3,32,32] (model space), keras.images / adam.images [5,2,3,32,32] (model
    space, after each iteration), keras.losses / adam.losses [5,2]."""
    from safetensors.torch import load_file

    model = FIXTURES["vgg11"][0]()
    sd = load_file(os.path.join(out_dir, "vgg11.safetensors"))
    model.load_state_dict(sd)
    model = model.float().eval()
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    gen = torch.Generator().manual_seed(77)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    # keras-vis-like seed: mid-grey plus noise of 5 % of the range, in model space.
    pixels = 0.5 + 0.05 * torch.randn((2, 3, 32, 32), generator=gen)
    seed = ((pixels - mean) / std).float()

    classes = torch.tensor([3, 7])

    def class_score(m, x):
        return m(x).gather(1, classes.view(-1, 1)).squeeze(1)

    channels = torch.tensor([2, 11])
    trunk = model.features[:8]  # up to features.7 (ReLU)

    def filter_score(_m, x):
        a = trunk(x)
        return a[torch.arange(2), channels].flatten(1).mean(1)

    out = {"seed": seed.contiguous()}
    for name, opt, fn in [("keras", "keras", class_score), ("adam", "adam", filter_score)]:
        images, losses = maximize_run(model, seed, fn, opt, 5)
        out[f"{name}.images"] = images.contiguous()
        out[f"{name}.losses"] = losses.contiguous()
    meta = {
        "model": "vgg11",
        "keras.targets": "class 3, class 7",
        "adam.targets": "features.7 channels 2, 11",
        "torch": torch.__version__,
    }
    save_file(out, os.path.join(out_dir, "maximize.safetensors"), metadata=meta)
    return {k: tuple(v.shape) for k, v in out.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests",
                                                   "fixtures"))
    ap.add_argument("--only", default="", help="comma-separated fixture names")
    ap.add_argument("--verbose", action="store_true", help="print per-layer shapes and max|act|")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    names = [n for n in args.only.split(",") if n] or list(FIXTURES) + ["maximize"]
    check_names()
    if "maximize" in names:
        names.remove("maximize")
        rows_m = [make(n, args.out) for n in names]
        print("maximize:", make_maximize(args.out))
        names, done = [], rows_m
    else:
        done = []
    rows = done + [make(n, args.out) for n in names]
    print(f"{'fixture':<10} {'dtype':<5} {'params':>8} {'weights B':>10} {'io B':>8} "
          f"{'max|logit|':>10}")
    for r in rows:
        print(f"{r['name']:<10} {r['dtype']:<5} {r['params']:>8} {r['w_bytes']:>10} "
              f"{r['io_bytes']:>8} {r['max_logit']:>10.4f}")
        if args.verbose:
            for n in r["layers"]:
                print(f"    {n:<14} {str(r['shapes'][n]):<18} max|act| {r['act_max'][n]:.4f}")
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"total size of {os.path.normpath(args.out)}: {total} bytes ({total / 2**20:.3f} MiB)")
    if total >= 5_000_000:
        print("ERROR: fixtures exceed 5 MB", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
