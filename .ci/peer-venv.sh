#!/usr/bin/env bash
# Makes a venv with onnx and networkx for the Python ingest peer (benches/ingest_peer.py) and
# prints its interpreter on stdout:
#
#   export ARCHDB_PEER_PYTHON=$(.ci/peer-venv.sh)    # empty when it could not be made
#
# Usage: .ci/peer-venv.sh [DIR] (default ~/.cache/archdb/peer-venv, reused while it works).
# When PyPI cannot be reached it says so on stderr and prints nothing; benches/ingest.sh then
# times archdb alone and says the peer is missing.
set -euo pipefail
dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/archdb/peer-venv}
check='import onnx, onnx.shape_inference, networkx'
if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "$check" 2>/dev/null; then
    echo "$dir/bin/python"
    exit 0
fi
mkdir -p "$(dirname "$dir")"
python3 -m venv "$dir"
if timeout 300 "$dir/bin/pip" install --quiet --disable-pip-version-check --timeout 30 --retries 1 \
    'onnx>=1.16' 'networkx>=3' && "$dir/bin/python" -c "$check"; then
    echo "$dir/bin/python"
else
    echo "peer-venv: could not install onnx and networkx (no network?)" >&2
fi
