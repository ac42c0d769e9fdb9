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
DIR=${1:-} exec "$(dirname "$0")/venv.sh" metrics-venv 'from prometheus_client.parser import text_string_to_metric_families' 'prometheus-client>=0.20,<1'
