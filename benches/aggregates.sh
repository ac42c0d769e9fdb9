#!/usr/bin/env bash
# Single-call times of the aggregate GETs of issue 12 against a running archdb: the first call
# (cold, on a freshly started server: computed), the second (warm: from the cache), and a third
# with the second's ETag in If-None-Match (304). Against a server started with
# `--cache-bytes 0` every call is computed. Loopback only; one call at a time.
#
# Usage: benches/aggregates.sh [BASE_URL]   (default http://127.0.0.1:8080)
set -euo pipefail
base=${1:-http://127.0.0.1:8080}
case "$base" in
    http://127.0.0.1:* | http://localhost:* | "http://[::1]:"*) ;;
    *) echo "aggregates.sh: loopback addresses only (got $base)" >&2; exit 2 ;;
esac
paths=(
    "/v1/benchmarks"
    "/v1/stats/summary"
    "/v1/stats/summary?benchmark=nb201&dataset=cifar10"
    "/v1/stats/pareto?dataset=cifar10&x=params&split=test&epoch=200"
    "/v1/results?unique_nn=true&max_rows=20"
)
call() { # path, extra curl args… → "status seconds etag"
    local path=$1
    shift
    curl -sS --max-time 60 -o /dev/null -D /tmp/aggregates-headers.$$ -w '%{http_code} %{time_total}' \
        "$@" "$base$path"
    printf ' %s\n' "$(tr -d '\r' </tmp/aggregates-headers.$$ | awk 'tolower($1) == "etag:" { print $2 }')"
}
printf '| call | first (s) | second (s) | If-None-Match (s) |\n|---|---:|---:|---:|\n'
for path in "${paths[@]}"; do
    read -r s1 t1 _ < <(call "$path")
    read -r s2 t2 etag < <(call "$path")
    if [ -n "$etag" ]; then
        read -r s3 t3 _ < <(call "$path" -H "If-None-Match: $etag")
    else
        s3=-; t3=-
    fi
    printf '| `%s` | %s (%s) | %s (%s) | %s (%s) |\n' "$path" "$t1" "$s1" "$t2" "$s2" "$t3" "$s3"
done
rm -f /tmp/aggregates-headers.$$
