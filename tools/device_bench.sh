#!/usr/bin/env bash
# device_bench.sh: cnnvis's kernel benchmark and the PyTorch comparison on an NVIDIA GPU, in
# one run that finishes within about 8 minutes (it stops starting stages after 480 s).
#
# Runs in the repository root on a machine with python3 + torch + torchvision (CUDA), no Rust
# and no network. Expects, beside the working tree:
#   .gl/        Vulkan loader .debs (unpacked here with dpkg -x)
#   .whl/       captum, grad-cam and ttach wheels (installed with --no-deps into /tmp/site)
#   .benchbin/  the prebuilt bench binaries `e2e`, `kernels` and `profile`
# Writes into "$OUT/" (6 files): log.txt (setup, nvidia-smi, every table), kernels.json (every
# conv variant of every layer), kernels64.json (VGG16's convs at batch 64),
# fp32.json (light cases, batch 1 and 64, TF32 off), heavy.json (SmoothGrad-50, Score-CAM,
# activation maximization with 20 iterations, TF32 off), tf32.json (torch with TF32 on;
# cnnvis's figures reused from fp32.json). Each JSON is rewritten after every case, so a
# stage cut short by its timeout keeps what it measured.
#
# Preparing the carried folders (on the x86-64 build machine, repository root):
#   mkdir -p .benchbin && for b in e2e kernels profile; do
#     p=$(XDG_RUNTIME_DIR=/tmp cargo bench --bench $b --no-run 2>&1 |
#         sed -n 's/.*Executable .*(\(.*\))$/\1/p'); cp "$p" .benchbin/$b; done
#   cargo build --release --bin cnnvis && cp target/release/cnnvis .benchbin/
#   ls -la .benchbin   # four executables, 9-14 MB each
#   mkdir -p .whl && python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --platform manylinux2014_x86_64 --platform any -d .whl captum==0.9.0 ttach==0.0.3
#   # grad-cam is published as a source archive only: build its (pure-Python) wheel instead.
#   python3 -m pip wheel --no-deps -w .whl grad-cam==1.5.7
# Their dependencies are not carried: captum imports matplotlib, numpy, packaging, tqdm;
# pytorch_grad_cam imports cv2 (opencv-python-headless), scipy, sklearn, matplotlib, PIL,
# tqdm and ttach. The setup step prints which import; where captum or pytorch_grad_cam does
# not, bench_vs_torch.py runs its plain-autograd fallbacks and names them in its table.
#
# Run: bash tools/device_bench.sh   (OUT defaults to ./device_out)
# DEVICE_BENCH_STAGES="adapter kernels fp32" runs only those stages (of adapter, kernels,
# kernels64, fp32, profile, startup, heavy, tf32), DEVICE_BENCH_MODELS=vgg16 only that model in the
# PyTorch comparison and the profile, DEVICE_BENCH_KERNELS=vgg16 only that model's layers in
# the kernels stage, and DEVICE_BENCH_BUDGET=S stops starting stages after S seconds.

set -u
OUT=${OUT:-$PWD/device_out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
START=$(date +%s)
BUDGET=${DEVICE_BENCH_BUDGET:-480}
STAGES=${DEVICE_BENCH_STAGES:-adapter kernels kernels64 fp32 profile startup heavy tf32}
MODELS=${DEVICE_BENCH_MODELS:-vgg16,resnet50}
KERNEL_FILTER=${DEVICE_BENCH_KERNELS:-}

elapsed() { echo $(($(date +%s) - START)); }

# stage NAME SECONDS CMD...: runs CMD under a timeout of SECONDS, shortened to what is left.
stage() {
    local name=$1 want=$2
    shift 2
    if [[ " $STAGES " != *" $name "* ]]; then
        return
    fi
    local left=$((BUDGET - $(elapsed)))
    local t=$((want < left ? want : left))
    if ((t < 20)); then
        echo "== skip $name: $(elapsed) s used of $BUDGET"
        return
    fi
    echo
    echo "== $name (timeout ${t} s, at $(elapsed) s)"
    timeout -k 5 "$t" "$@"
    echo "== $name: exit $? at $(elapsed) s"
}

echo "== setup $(date -u +%FT%TZ)"
for f in .gl/*.deb; do
    [ -e "$f" ] && dpkg -x "$f" /
done
ldconfig
if ! ls /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json >/dev/null 2>&1 &&
    [ -e /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    echo "VK_DRIVER_FILES=$VK_DRIVER_FILES"
fi
# Never benchmark a CPU Vulkan driver by accident: pick the NVIDIA adapter by name.
export WGPU_ADAPTER_NAME=${WGPU_ADAPTER_NAME:-NVIDIA}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
# Every stage tunes for itself, as in earlier runs (and e2e's first-call stays cold); only the
# startup stage keeps decisions across its two runs.
export CNNVIS_AUTOTUNE_CACHE=0
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
python3 - <<'EOF'
import importlib
for m in ["torch", "torchvision", "captum.attr", "pytorch_grad_cam", "cv2", "scipy", "sklearn",
          "matplotlib", "ttach", "tqdm", "PIL"]:
    try:
        mod = importlib.import_module(m)
        print(f"import {m}: ok {getattr(mod, '__version__', '')}")
    except Exception as e:
        print(f"import {m}: FAILED {type(e).__name__}: {e}")
import torch
print("torch.cuda:", torch.cuda.is_available(), torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF
nvidia-smi
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,power.limit --format=csv
chmod +x .benchbin/e2e .benchbin/kernels .benchbin/profile 2>/dev/null
echo "setup done at $(elapsed) s"

# The adapter and its FMA peak (the filter matches no layer).
stage adapter 40 env CNNVIS_BENCH_SAMPLES=3 .benchbin/kernels adapter-check-only
stage kernels 120 env CNNVIS_BENCH_SAMPLES=3 .benchbin/kernels --all-variants \
    --json "$OUT/kernels.json" $KERNEL_FILTER
stage kernels64 80 env CNNVIS_BENCH_SAMPLES=3 CNNVIS_BENCH_BATCH=64 .benchbin/kernels vgg16 \
    --json "$OUT/kernels64.json"
stage fp32 150 python3 tools/bench_vs_torch.py --device cuda --cnnvis .benchbin/e2e \
    --models $MODELS --cases light,forward-plan,saliency-plan --batch 1,64 --samples 5 \
    --json "$OUT/fp32.json"
# Per-launch profiles of vanilla saliency's pass (the e2e stage wrote the random-weight models).
stage profile 40 env MODELS="$MODELS" bash -c 'for m in ${MODELS//,/ }; do
    .benchbin/profile "${TMPDIR:-/tmp}/cnnvis-bench/$m-random-v1.safetensors" --top 15; done'
# The issue's "second CLI run" goal: the same `cnnvis saliency` command twice in fresh
# processes, timing what each spends before its first dispatch (CNNVIS_TIMINGS=1), with empty
# caches first. Once with only cnnvis's own caches (pipelines, autotuning decisions; the
# driver's shader disk cache off), once as a user runs it (driver cache on, in a fresh dir).
stage startup 60 bash -c 'm="${TMPDIR:-/tmp}/cnnvis-bench/vgg16-random-v1.safetensors"
    chmod +x .benchbin/cnnvis
    for mode in ours-only default; do
        c=$(mktemp -d); g=$(mktemp -d)
        if [ $mode = ours-only ]; then dc=0; else dc=1; fi
        for run in 1 2; do
            echo "-- $mode run $run"
            s=$(date +%s%N)
            env CNNVIS_TIMINGS=1 CNNVIS_CACHE_DIR=$c CNNVIS_AUTOTUNE_CACHE=1 \
                __GL_SHADER_DISK_CACHE=$dc \
                __GL_SHADER_DISK_CACHE_PATH=$g .benchbin/cnnvis saliency --model "$m" \
                --image tests/data/shapes/00.png --class 20 --out /tmp/startup.png
            echo "wall $((($(date +%s%N) - s) / 1000000)) ms"
        done
        ls -la $c
    done'
stage heavy 110 python3 tools/bench_vs_torch.py --device cuda --cnnvis .benchbin/e2e \
    --models $MODELS --cases smoothgrad,am,scorecam,am-filters --am-iters 20 \
    --samples 2 --json "$OUT/heavy.json"
if [ -e "$OUT/fp32.json" ]; then
    stage tf32 50 python3 tools/bench_vs_torch.py --device cuda --tf32 \
        --models $MODELS --cases forward,saliency,guided,gradcam --batch 1,64 --samples 5 \
        --reuse-cnnvis "$OUT/fp32.json" --json "$OUT/tf32.json"
fi
echo
echo "== done at $(elapsed) s; files in $OUT:"
ls -la "$OUT"
