#!/usr/bin/env bash
# Serving benchmarks, run after `pipeline run` has promoted the models:
#   1. in-process `decide` latency per model (p50/p99), features included;
#   2. HTTP: `pipeline serve` on loopback under a fixed request rate (default 5000/s, 60 s).
# usage: benches/serve.sh [RATE] [SECONDS] [random_forest|lstm_cnn]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pipeline-target}"
rate=${1:-5000}; seconds=${2:-60}; model=${3:-random_forest}
bin="$CARGO_TARGET_DIR/release/pipeline"
cargo build --release --quiet
cargo bench --no-run --quiet --bench decide --bench serve_load 2>/dev/null
work=$(mktemp -d); trap 'rm -rf "$work"; kill $server 2>/dev/null || true' EXIT
"$bin" export ingest "$work/ingest.parquet" >/dev/null
echo "== decide(), in process"
cargo bench --quiet --bench decide -- "$work/ingest.parquet" artifacts/models
echo "== HTTP, $model"
"$bin" serve --addr 127.0.0.1:0 --model "$model" > "$work/serve.out" 2>/dev/null &
server=$!
for _ in $(seq 50); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$work/serve.out")
cargo bench --quiet --bench serve_load -- "$url" "$work/ingest.parquet" "$rate" "$seconds"
