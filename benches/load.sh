#!/usr/bin/env bash
# The mixed read load of issue 12 against a running archdb, with wrk (Debian package `wrk`; the
# repository does not ship it): benches/load.lua's mix for a fixed time and connection count.
# Loopback only. wrk prints the request rate, the latency percentiles (--latency) and, when
# there are any, "Non-2xx or 3xx responses" and socket errors.
#
# Usage: benches/load.sh [BASE_URL] [SECONDS] [CONNECTIONS]
#        (defaults: http://127.0.0.1:8080, 60, 8; ARCHDB_LOAD_MIN_ID / ARCHDB_LOAD_MAX_ID: the
#        architecture ids looked up, all stored, default 1 and 10000)
set -euo pipefail
base=${1:-http://127.0.0.1:8080}
seconds=${2:-60}
connections=${3:-8}
case "$base" in
    http://127.0.0.1:* | http://localhost:* | "http://[::1]:"*) ;;
    *) echo "load.sh: loopback addresses only (got $base)" >&2; exit 2 ;;
esac
if ! [[ "$seconds" =~ ^[0-9]+$ && "$seconds" -le 600 && "$connections" =~ ^[0-9]+$ && "$connections" -le 256 ]]; then
    echo "load.sh: at most 600 seconds and 256 connections" >&2
    exit 2
fi
command -v wrk >/dev/null || { echo "load.sh: wrk is missing (apt-get install wrk)" >&2; exit 2; }
exec wrk --threads 2 --connections "$connections" --duration "${seconds}s" --timeout 10s --latency \
    --script "$(dirname "$0")/load.lua" "$base"
