#!/usr/bin/env bash
# Makes a venv with the official MCP Python SDK for tests/mcp (the MCP client of those tests)
# and prints its interpreter on stdout:
#
#   export ARCHDB_MCP_PYTHON=$(.ci/mcp-venv.sh)
#
# Fails when the SDK cannot be installed: the MCP tests are never skipped.
# Usage: .ci/mcp-venv.sh [DIR] (default ~/.cache/archdb/mcp-venv, reused while it works).
set -euo pipefail
dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/archdb/mcp-venv}
check='import mcp, jsonschema'
if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "$check" 2>/dev/null; then
    echo "$dir/bin/python"
    exit 0
fi
mkdir -p "$(dirname "$dir")"
python3 -m venv "$dir"
"$dir/bin/pip" install --quiet --disable-pip-version-check --timeout 30 'mcp>=2.3,<3' >&2
"$dir/bin/python" -c "$check"
echo "$dir/bin/python"
