#!/usr/bin/env bash
# device_maximize.sh: issue 5's VGG16 example on an NVIDIA GPU — `cnnvis maximize` on a
# full-size torchvision VGG16 (random weights, exported on the machine), 64 filters of
# features.28 x 200 iterations as ONE batch, timed; then the same at batch 1 for reference.
#
# Runs in the repository root on the rented GPU machine (python3 with torch + torchvision, no
# Rust, no network). Expects the Vulkan loader .debs in .gl/ and the release binary in
# .benchbin/cnnvis (cp target/release/cnnvis .benchbin/). Writes into "$OUT/": maximize.txt
# (log and timings), vgg16_filters.png (the grid).
# Run: bash tools/device_maximize.sh   (OUT defaults to ./device_out)
set -u
OUT=${OUT:-$PWD/device_out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/maximize.txt") 2>&1
for f in .gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
ldconfig
if ! ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
export XDG_RUNTIME_DIR=/tmp
BIN=.benchbin/cnnvis
$BIN adapter
t0=$(date +%s%N)
python3 tools/export_torchvision.py --arch vgg16 --out /tmp/vgg16.safetensors
t1=$(date +%s%N)
echo "export: $(((t1 - t0) / 1000000)) ms"
run() { # run LABEL ITERATIONS FILTERS OUT
    local s e
    s=$(date +%s%N)
    timeout -k 5 "${TIMEOUT:-240}" $BIN maximize --model /tmp/vgg16.safetensors \
        --layer features.28 --filters "$3" --iterations "$2" --out "$4"
    local rc=$?
    e=$(date +%s%N)
    echo "== $1: exit $rc, $(((e - s) / 1000000)) ms wall (model load, pipeline compilation,"
    echo "   $2 iterations, the summary forward pass and the PNG included)"
}
run "warm-up, 64 filters x 2 iterations" 2 0..64 /tmp/warm.png
run "64 filters x 200 iterations, one batch" 200 0..64 "$OUT/vgg16_filters.png"
run "1 filter x 200 iterations" 200 0..1 /tmp/one.png
