#!/usr/bin/env bash
# Bulk ingest, archdb against its Python peer, in one run (issue #12: "≥ 10× the peer").
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres benches/ingest_vs_peer.sh [REPS]
#
# Sets: the torchvision exports (../shared/data/onnx-samples and the torchvision files of
# tests/fixtures/zoo) and the first 1,000 NB201 cells written by `archdb generate nb201`.
# For each set, REPS rounds (default 5) of each way, one way after the other:
#   * peer: benches/ingest_peer.py (onnx.load + shape inference + networkx DiGraph, nothing
#     stored), interpreter from .ci/peer-venv.sh or $ARCHDB_PEER_PYTHON;
#   * archdb batch: the set as one tar archive (`tar -c | curl --data-binary @-`) to
#     POST /v1/architectures/batch of a release `archdb serve`, on an emptied database (first
#     upload, stored), timed from the start of tar to curl's exit (after one untimed batch per
#     set, as a running service has served before);
#   * archdb one by one: one POST /v1/architectures per file (the way before the batch
#     endpoint), same empty database.
# Prints one line per set with the medians and the ratio of throughputs: x_peer against the
# peer's own timer (its loop over the files, without starting Python and importing onnx);
# peer_cmd_s is the whole peer command, start-up included, for reference. Loopback only; the
# server gets a database of its own (archdb_bench_ingest), dropped at the end.
set -euo pipefail
export PGOPTIONS="--client-min-messages=warning"
cd "$(dirname "$0")/.."
reps=${1:-5}
: "${DATABASE_URL:?set DATABASE_URL to a PostgreSQL server (the bench makes its own database)}"
py=${ARCHDB_PEER_PYTHON:-$(.ci/peer-venv.sh)}
[ -n "$py" ] || { echo "no Python with onnx and networkx (.ci/peer-venv.sh failed)" >&2; exit 1; }

cargo build --release --quiet --bin archdb
bin=${CARGO_TARGET_DIR:-target}/release/archdb
work=$(mktemp -d)
server_db="${DATABASE_URL%/*}/archdb_bench_ingest"
port=${ARCHDB_BENCH_PORT:-18321}
base="http://127.0.0.1:$port"
cleanup() {
    [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    psql -q "$DATABASE_URL" -c "drop database if exists archdb_bench_ingest" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/torchvision" "$work/nb201-all" "$work/nb201"
cp ../shared/data/onnx-samples/*.onnx "$work/torchvision/"
"$py" -c '
import json, sys
files = json.load(open("tests/fixtures/zoo/manifest.json"))["files"]
print("\n".join(k for k, v in files.items() if v["source"] == "torchvision"))' |
    while read -r f; do cp "tests/fixtures/zoo/$f" "$work/torchvision/"; done
# $NB201_DIR: a folder `archdb generate nb201` wrote already (saves generating 15,625 files).
if [ -z "${NB201_DIR:-}" ]; then
    NB201_DIR="$work/nb201-all"
    "$bin" generate nb201 --out "$NB201_DIR" >/dev/null
fi
for i in $(seq 0 999); do cp "$NB201_DIR/nb201-$i.onnx" "$work/nb201/"; done
rm -rf "$work/nb201-all"

psql -q "$DATABASE_URL" -c "drop database if exists archdb_bench_ingest" >/dev/null
RUST_LOG=warn "$bin" serve --no-seed --rate-per-sec 0 --database-url "$server_db" \
    --addr "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 600); do
    curl -sf "$base/healthz" >/dev/null && break
    sleep 0.1
done
curl -sf "$base/healthz" >/dev/null || { cat "$work/serve.log" >&2; exit 1; }

now() { date +%s.%N; }
# Every timed archdb run starts from empty tables and a checkpoint: otherwise the writes of the
# run before (1,000 one-by-one uploads) are still being flushed while the next one is timed.
empty() {
    psql -q "$server_db" -c "truncate architectures restart identity cascade" -c checkpoint >/dev/null
}
median() { sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
    "load $(cut -d' ' -f1-3 /proc/loadavg); $("$py" -c 'import onnx, networkx; print("onnx", onnx.__version__, "networkx", networkx.__version__)')"
printf '%-12s %6s %10s %12s %10s %14s %8s %10s\n' set files peer_s peer_cmd_s archdb_s one_by_one_s x_peer x_single
for set in torchvision nb201; do
    dir="$work/$set"
    files=$(find "$dir" -name '*.onnx' | wc -l)
    peer=() peer_cmd=() batch=() single=()
    # Each way is timed in a block of its own: after 1,000 one-by-one uploads the next batch
    # was 40 % slower for a round (the server's allocator and PostgreSQL settling), which would
    # measure the previous run rather than the batch.
    for _ in $(seq 1 "$reps"); do
        t0=$(now)
        "$py" benches/ingest_peer.py "$dir" >"$work/peer.json"
        t1=$(now)
        peer_cmd+=("$(echo "$t1 - $t0" | bc -l)")
        peer+=("$("$py" -c 'import json,sys; print(json.load(sys.stdin)["seconds"])' <"$work/peer.json")")
    done
    # One untimed batch first: a running service has its connections and caches warm.
    tar -cf - -C "$dir" . | curl -sf -o /dev/null -H 'content-type: application/x-tar' \
        --data-binary @- "$base/v1/architectures/batch"
    for _ in $(seq 1 "$reps"); do
        empty
        t0=$(now)
        tar -cf - -C "$dir" . | curl -sf -o "$work/report.json" -H 'content-type: application/x-tar' \
            --data-binary @- "$base/v1/architectures/batch"
        t1=$(now)
        batch+=("$(echo "$t1 - $t0" | bc -l)")
        "$py" -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["failed"] == 0 and r["created"] + r["existing"] == int(sys.argv[2]), r' "$work/report.json" "$files"
    done
    for _ in $(seq 1 "$reps"); do
        empty
        t0=$(now)
        for f in "$dir"/*.onnx; do
            curl -sf -o /dev/null -H 'content-type: application/octet-stream' \
                --data-binary "@$f" "$base/v1/architectures"
        done
        t1=$(now)
        single+=("$(echo "$t1 - $t0" | bc -l)")
    done
    p=$(printf '%s\n' "${peer[@]}" | median)
    pc=$(printf '%s\n' "${peer_cmd[@]}" | median)
    b=$(printf '%s\n' "${batch[@]}" | median)
    s=$(printf '%s\n' "${single[@]}" | median)
    printf '%-12s %6d %10.4f %12.4f %10.4f %14.4f %8.1f %10.1f\n' "$set" "$files" "$p" "$pc" "$b" "$s" \
        "$(echo "$p / $b" | bc -l)" "$(echo "$s / $b" | bc -l)"
    echo "  rounds: peer ${peer[*]} | peer command ${peer_cmd[*]} | batch ${batch[*]} | one by one ${single[*]}"
done
