#!/usr/bin/env bash
# Makes a venv with openapi-spec-validator for tests/api/openapi.rs and prints its interpreter:
#
#   export ARCHDB_SPEC_PYTHON=$(.ci/spec-venv.sh)    # empty when it could not be made
#
# Usage: .ci/spec-venv.sh [DIR] (default ~/.cache/archdb/spec-venv, reused while it works).
# When PyPI cannot be reached it says so on stderr and prints nothing; the spec test then fails
# under CI=true and reports itself skipped elsewhere.
set -euo pipefail
DIR=${1:-} exec "$(dirname "$0")/venv.sh" spec-venv 'import openapi_spec_validator' 'openapi-spec-validator>=0.7,<0.10'
