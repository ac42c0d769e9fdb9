#!/usr/bin/env bash
# Makes a PyTorch venv for tests/torch_parity.rs and prints its interpreter on stdout:
#
#   export ARCHDB_TORCH_PYTHON=$(.ci/torch-venv.sh)    # empty when it could not be made
#
# torch comes from PyPI (the only Python registry the build machines reach), whose Linux wheel
# is the CUDA build with ~3 GB of nvidia-* dependencies (`pip install --no-deps torch` fails at
# `import torch`: libcublasLt not found); it runs on the CPU all the same. When PyPI cannot be
# reached the script says so on stderr and succeeds with no output, and the parity test then
# fails in CI (skips elsewhere). Usage: .ci/torch-venv.sh [DIR]
# (default ~/.cache/archdb/torch-venv, reused while it works, so CI downloads torch once).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/archdb/torch-venv}
check='import torch, numpy, safetensors; torch.ones(2).sum()'
if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "$check" 2>/dev/null; then
    echo "$dir/bin/python"
    exit 0
fi
mkdir -p "$(dirname "$dir")"
python3 -m venv "$dir"
pip=("$dir/bin/pip" install --quiet --disable-pip-version-check --timeout 30 --retries 1)
if timeout 1200 "${pip[@]}" torch &&
    timeout 300 "${pip[@]}" numpy safetensors &&
    "$dir/bin/python" -c "$check"; then
    echo "$dir/bin/python"
else
    echo "torch-venv: could not install a CPU torch with numpy and safetensors (no network?);" \
        "the PyTorch parity test will fail in CI (and be skipped elsewhere)" >&2
fi
