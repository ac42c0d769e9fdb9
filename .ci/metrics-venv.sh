#!/usr/bin/env bash
# Makes a venv with prometheus-client (the Prometheus project's Python client, whose parser reads
# the text format) for tests/api/metrics.rs and prints its interpreter:
#
#   export ARCHDB_METRICS_PYTHON=$(.ci/metrics-venv.sh)    # empty when it could not be made
#
# Usage: .ci/metrics-venv.sh [DIR] (default ~/.cache/archdb/metrics-venv, reused while it works).
# When PyPI cannot be reached it says so on stderr and prints nothing; the metrics test then
# fails under CI=true and reports itself skipped elsewhere.
set -euo pipefail
dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/archdb/metrics-venv}
check='from prometheus_client.parser import text_string_to_metric_families'
if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "$check" 2>/dev/null; then
    echo "$dir/bin/python"
    exit 0
fi
mkdir -p "$(dirname "$dir")"
python3 -m venv "$dir"
if timeout 300 "$dir/bin/pip" install --quiet --disable-pip-version-check --timeout 30 --retries 1 \
    'prometheus-client>=0.20,<1' && "$dir/bin/python" -c "$check"; then
    echo "$dir/bin/python"
else
    echo "metrics-venv: could not install prometheus-client (no network?)" >&2
fi
