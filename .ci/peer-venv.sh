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
DIR=${1:-} exec "$(dirname "$0")/venv.sh" peer-venv 'import onnx, onnx.shape_inference, networkx' 'onnx>=1.16' 'networkx>=3'
