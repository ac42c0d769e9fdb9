#!/usr/bin/env bash
# schemathesis (PyPI) against a seeded `archdb serve`: every phase (examples, coverage, fuzzing,
# stateful links) and every check, with the admin token, on the served /openapi.json. Any
# failure fails the run.
#
# Usage: .ci/schemathesis.sh [extra schemathesis arguments]
#   ARCHDB_SCHEMATHESIS_VENV  venv to use (default ~/.cache/archdb/schemathesis-venv, reused)
#   ARCHDB_SCHEMATHESIS_EXAMPLES  examples per operation and phase (default 25)
#   ARCHDB_SCHEMATHESIS_MAX_TIME  wall-clock limit of the schemathesis run in seconds (default 600;
#                                 schemathesis' own --max-time would repeat fuzzing until it is spent)
#
# The seed is the LEMUR sample (15,587 rows, 7 ONNX graphs) and the bundled predictors: it loads
# in a few seconds, against about a minute for NAS-Bench-Macro and minutes for NAS-Bench-201.
# The database is a fresh one on DATABASE_URL's server when that is set (dropped by the test
# harness like its own), otherwise archdb's embedded cluster in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

venv=${ARCHDB_SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/archdb/schemathesis-venv}
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q '4\.32\.5'; then
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    # From PyPI only: no local wheel directory or other index the environment may name.
    env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_NO_INDEX \
        timeout 300 "$venv/bin/pip" install --quiet --disable-pip-version-check --timeout 60 \
        --index-url https://pypi.org/simple/ 'schemathesis==4.32.5'
fi

cargo build --quiet --bin archdb
target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

tmp=$(mktemp -d)
server=
cleanup() {
    if [ -n "$server" ]; then
        kill -TERM "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/seed"
ln -s "$repo/data/lemur-sample" "$tmp/seed/lemur-sample"
ln -s "$repo/data/predictor" "$tmp/seed/predictor"
if [ -n "${DATABASE_URL:-}" ]; then
    # Named like archdb's test databases (`archdb_test_<pid>_<creation in ns>_<suffix>`), which
    # its test harness drops 3 hours after creation (read from the name: a test run beside this
    # one dropped the database mid-run when the name had seconds in that place).
    export DATABASE_URL="${DATABASE_URL%/*}/archdb_test_$$_$(date +%s%N)_schemathesis"
else
    export ARCHDB_DATA_DIR="$tmp/data"
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
token="schemathesis-$$-$RANDOM$RANDOM"

started=$(date +%s)
ARCHDB_API_TOKEN=$token RUST_LOG=${RUST_LOG:-archdb=warn} \
    "$target/debug/archdb" serve --addr "127.0.0.1:$port" --seed-dir "$tmp/seed" \
    2>"$tmp/serve.log" &
server=$!
# Ready, then seeded: the starter set and the bundled predictors load in the background.
for _ in $(seq 600); do
    kill -0 "$server" 2>/dev/null || { cat "$tmp/serve.log" >&2; exit 1; }
    if curl -sf -H "Authorization: Bearer $token" "$url/v1/predictors" 2>/dev/null |
        python3 -c 'import json, sys; sys.exit(not any(p["active"] for p in json.load(sys.stdin)["predictors"]))' 2>/dev/null &&
        curl -sf -H "Authorization: Bearer $token" "$url/v1/architectures?limit=1" 2>/dev/null |
        python3 -c 'import json, sys; sys.exit(not json.load(sys.stdin)["items"])' 2>/dev/null; then
        break
    fi
    sleep 0.5
done
echo "schemathesis: server seeded in $(($(date +%s) - started)) s" >&2

# Realistic bodies for what the schema cannot say (an ONNX upload is a protobuf) come from the
# hooks; the configuration turns off the link inference that guesses from field names (the
# document's own links are used).
status=0
cd "$tmp" # schemathesis keeps its example database in the working directory
SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH="$repo/.ci" ARCHDB_ONNX_DIR="$repo/tests/fixtures/onnx-samples" \
    ARCHDB_SCHEMATHESIS_URL="$url" ARCHDB_SCHEMATHESIS_TOKEN="$token" \
    timeout "${ARCHDB_SCHEMATHESIS_MAX_TIME:-600}" \
    "$venv/bin/schemathesis" --config-file "$repo/.ci/schemathesis.toml" run "$url/openapi.json" \
    --checks all --max-examples "${ARCHDB_SCHEMATHESIS_EXAMPLES:-25}" --seed 1 \
    --no-shrink \
    --header "Authorization: Bearer $token" --request-timeout 60 "$@" || status=$?
if [ "$status" = 124 ]; then
    echo "schemathesis: stopped at the ${ARCHDB_SCHEMATHESIS_MAX_TIME:-600} s limit" >&2
fi
if grep -q "panicked" "$tmp/serve.log"; then
    grep -B2 -A10 "panicked" "$tmp/serve.log" >&2
    status=1
fi
echo "schemathesis: exit $status after $(($(date +%s) - started)) s in all" >&2
exit "$status"
