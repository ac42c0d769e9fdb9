#!/usr/bin/env bash
# Makes (or reuses) a venv under ~/.cache/archdb that can run a Python check, installing the
# given PyPI requirements when it cannot, and prints its interpreter on stdout. When they cannot
# be installed (no network) it says so on stderr and prints nothing, so callers can tell.
#
# Usage: .ci/venv.sh NAME CHECK REQUIREMENT... (the venv is $DIR, else ~/.cache/archdb/NAME)
set -euo pipefail
name=$1 check=$2
shift 2
dir=${DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/archdb/$name}
if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "$check" 2>/dev/null; then
    echo "$dir/bin/python"
    exit 0
fi
mkdir -p "$(dirname "$dir")"
python3 -m venv "$dir"
if timeout 300 "$dir/bin/pip" install --quiet --disable-pip-version-check --timeout 30 --retries 1 \
    "$@" && "$dir/bin/python" -c "$check"; then
    echo "$dir/bin/python"
else
    echo "$name: could not install $* (no network?)" >&2
fi
