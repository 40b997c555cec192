#!/usr/bin/env python3
"""Export a torchvision VGG / ResNet / AlexNet as a safetensors file that cnnvis loads.

Purpose
    Builds the torchvision model, puts it in eval mode and writes its state_dict (tensor names
    exactly as PyTorch names them, contiguous, num_batches_tracked included) to one safetensors
    file with metadata {"cnnvis.arch": "<arch>"}; cnnvis reconstructs the topology from that
    arch name.

How to run (from the repository root):
    /work/venv/bin/python tools/export_torchvision.py --arch resnet50 --out /tmp/resnet50.safetensors
    /work/venv/bin/python tools/export_torchvision.py --arch vgg16 --pretrained --dtype f16 \\
        --out vgg16.safetensors

    Without --pretrained the weights are torchvision's own random initialisation (seeded by
    --seed), which needs no network. --pretrained asks torchvision for the arch's DEFAULT
    ImageNet weights; torchvision downloads them on first use (network access needed, cached
    afterwards in torch's hub cache directory).

What it writes
    FILE.safetensors given by --out (nothing else). Prints tensor count, parameter count, file
    size and the time taken.
"""

import argparse
import os
import sys
import time

import torch
import torch.nn as nn
import torchvision
from safetensors.torch import save_file

ARCHS = [
    "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "alexnet",
]
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def last_linear_parent(model):
    """(parent module, attribute name) of the logits Linear: `fc` or `classifier[-1]`."""
    if hasattr(model, "fc"):
        return model, "fc"
    return model.classifier, str(len(model.classifier) - 1)


def build(arch, pretrained, num_classes):
    ctor = getattr(torchvision.models, arch)
    if not pretrained:
        return ctor(weights=None, num_classes=num_classes or 1000)
    model = ctor(weights="DEFAULT")
    if num_classes and num_classes != 1000:
        # Keep the pretrained features, replace only the classifier head (random, seeded).
        parent, attr = last_linear_parent(model)
        old = getattr(parent, attr)
        setattr(parent, attr, nn.Linear(old.in_features, num_classes))
        print(f"note: replaced the pretrained 1000-class head by a random {num_classes}-class one",
              file=sys.stderr)
    return model


def main():
    ap = argparse.ArgumentParser(
        description="Export a torchvision model's state_dict to safetensors for cnnvis.",
        epilog="--pretrained downloads torchvision's DEFAULT weights and so needs network "
        "access (the first time; torch caches them). Without it the weights are random.",
    )
    ap.add_argument("--arch", required=True, choices=ARCHS)
    ap.add_argument("--pretrained", action="store_true",
                    help="use torchvision's DEFAULT ImageNet weights (needs network access)")
    ap.add_argument("--num-classes", type=int, default=None,
                    help="output classes (default 1000; with --pretrained, a different value "
                    "replaces the last Linear by a random one)")
    ap.add_argument("--dtype", choices=list(DTYPES), default="f32",
                    help="storage dtype of floating tensors (num_batches_tracked stays int64)")
    ap.add_argument("--seed", type=int, default=0, help="seed for random weights (default 0)")
    ap.add_argument("--out", required=True, help="output .safetensors path")
    args = ap.parse_args()

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    model = build(args.arch, args.pretrained, args.num_classes).eval()
    t_build = time.perf_counter() - t0

    dtype = DTYPES[args.dtype]
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach()
        if v.is_floating_point():
            v = v.to(dtype)
        tensors[k] = v.contiguous().clone()  # own storage each: safetensors rejects sharing
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    save_file(tensors, args.out, metadata={"cnnvis.arch": args.arch})
    total = time.perf_counter() - t0

    params = sum(p.numel() for p in model.parameters())
    size = os.path.getsize(args.out)
    print(f"{args.arch}: {len(tensors)} tensors, {params} parameters, {args.dtype}, "
          f"{'pretrained' if args.pretrained else 'random'} -> {args.out} "
          f"({size} bytes, {size / 2**20:.1f} MiB); build {t_build:.1f} s, total {total:.1f} s")


if __name__ == "__main__":
    main()
