#!/usr/bin/env bash
# Makes a venv with openapi-spec-validator for tests/api/openapi.rs and prints its interpreter:
#
#   export ARCHDB_SPEC_PYTHON=$(.ci/spec-venv.sh)    # empty when it could not be made
#
# Usage: .ci/spec-venv.sh [DIR] (default ~/.cache/archdb/spec-venv, reused while it works).
# When PyPI cannot be reached it says so on stderr and prints nothing; the spec test then fails
# under CI=true and reports itself skipped elsewhere.
set -euo pipefail
dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/archdb/spec-venv}
check='import openapi_spec_validator'
if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "$check" 2>/dev/null; then
    echo "$dir/bin/python"
    exit 0
fi
mkdir -p "$(dirname "$dir")"
python3 -m venv "$dir"
if timeout 300 "$dir/bin/pip" install --quiet --disable-pip-version-check --timeout 30 --retries 1 \
    'openapi-spec-validator>=0.7,<0.10' && "$dir/bin/python" -c "$check"; then
    echo "$dir/bin/python"
else
    echo "spec-venv: could not install openapi-spec-validator (no network?)" >&2
fi
