#!/usr/bin/env bash
# Runs the Python client's tests (python/archdb_client/tests) against the real `archdb serve`:
# installs the package with pandas, requests and pytest into a venv (default
# ~/.cache/archdb/client-venv, reused), builds the binary and runs pytest. Anything that cannot
# be installed fails the run: these tests are never skipped. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${ARCHDB_CLIENT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/archdb/client-venv}
if [ ! -x "$dir/bin/python" ]; then
    mkdir -p "$(dirname "$dir")"
    python3 -m venv "$dir"
fi
"$dir/bin/pip" install --quiet --disable-pip-version-check --timeout 60 "./python/archdb_client[test]"
cargo build --quiet --bin archdb
target=$(cargo metadata --format-version 1 --no-deps |
    "$dir/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
ARCHDB_BIN="$target/debug/archdb" "$dir/bin/python" -m pytest -q python/archdb_client/tests "$@"
