#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# CUDA checks of python/archdb_torch on the GPU machine (PyTorch there, no Rust toolchain).
# Everything archdb computes is prepared here, carried in the working tree, and compared there:
#
#   archdb export-training-set --train-size 1563 --seed 0 --out python/device/set.safetensors
#   archdb train ... --out python/device/archdb.safetensors   (or any archdb artifact)
#   archdb predict-set --artifact python/device/archdb.safetensors \
#       --set python/device/set.safetensors --out python/device/archdb-predictions.json
#   # on the device machine, from the repository root:
#   python/device_check.sh python/device/set.safetensors python/device/archdb.safetensors \
#       python/device/archdb-predictions.json
#
# Writes under $OUT: env.txt (GPU, torch, CUDA), parity.json (CUDA forward pass against archdb's
# predictions, same tolerance as tests/torch_parity.rs), train.jsonl (one JSON line per epoch of
# a CUDA training run with the set's settings, cut off by the time limit), summary.json (seconds
# per epoch per stage) and, if training finished, cuda-trained.safetensors to check back in
# archdb with `archdb predict-set`. The whole script stays under 8 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 3 ]; then
    echo "usage: $0 SET ARTIFACT ARCHDB_PREDICTIONS_JSON [TRAIN_CONFIG_JSON]" >&2
    exit 2
fi
set_file=$1 artifact=$2 reference=$3 train_config=${4:-'{}'}
out=${OUT:-/tmp/archdb-device-check}
py=${PYTHON:-python3}
device=${DEVICE:-cuda}  # DEVICE=cpu tries the script where there is no GPU
export PYTHONPATH=python
mkdir -p "$out"
started=$SECONDS
left() { echo $((460 - (SECONDS - started))); }

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
    "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
"available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
} > "$out/env.txt" 2>&1
cat "$out/env.txt"

timeout 120 "$py" -m archdb_torch parity --artifact "$artifact" --set "$set_file" \
    --reference "$reference" --device "$device" > "$out/parity.json" 2> "$out/parity.err"
echo "parity exit $? (0 = within tolerance): $(cat "$out/parity.json")"

timeout "$(left)" "$py" -m archdb_torch train --set "$set_file" --device "$device" \
    --config "$train_config" --out "$out/cuda-trained.safetensors" \
    > "$out/train.jsonl" 2> "$out/train.err"
echo "training exit $? (124 = cut off by the time limit)"

"$py" - "$out/train.jsonl" > "$out/summary.json" <<'PY'
import json, sys
stages = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "stage" in r:
        stages.setdefault(r["stage"], []).append(r["seconds"])
print(json.dumps({s: {"epochs": len(v), "mean_seconds": sum(v) / len(v),
                      "mean_seconds_after_first": sum(v[1:]) / (len(v) - 1) if len(v) > 1 else None}
                  for s, v in stages.items()}))
PY
cat "$out/summary.json"
