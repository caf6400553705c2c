#!/usr/bin/env bash
# graft serve vs a Python reference server (FastAPI + onnxruntime, bench/serve_reference.py) on the
# same model, driven by the same load generator (examples/load.rs), loopback only, in one run:
#   bench/serve.sh [--clients 64] [--seconds 60] [--images DIR] [--windows "0 2 5 10"] [--batches "1 8 32"]
# Trains an image recognizer on the shipped images, exports it (image-in ONNX, what the Python
# server runs), then loads each server in turn: throughput, p50/p99 latency, failures other than
# 503, peak RSS. --windows / --batches: also measures graft at each batching window (ms) / largest
# batch, for --seconds/4 each.
# Writes bench/serve-results.json. Needs cargo and python3 (venv); installs the Python side into
# bench/.venv-serve on first use.
set -euo pipefail
clients=64
seconds=60
windows=""
batches=""
cd "$(dirname "$0")/.."
images=tests/fixtures/images
[ -d ../shared/data/images/photos ] && images=../shared/data/images/photos
while [[ $# -gt 0 ]]; do
  case $1 in
    --clients) clients=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --images) images=$2; shift 2 ;;
    --windows) windows=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    *) echo "usage: bench/serve.sh [--clients N] [--seconds S] [--images DIR] [--windows \"MS ...\"]" >&2; exit 2 ;;
  esac
done
images=$(cd "$images" && pwd)

venv=bench/.venv-serve
if ! cmp -s bench/serve-requirements.txt "$venv/requirements.txt"; then
  echo "installing the Python side into $venv ..." >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r bench/serve-requirements.txt
  cp bench/serve-requirements.txt "$venv/requirements.txt"
fi
py="$venv/bin/python"

cargo build --release --quiet --bin graft --example load
release=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
graft="$release/graft"

"$graft" train --data examples/data/tuxpaint-dev -o "$work/photos.safetensors" --quiet
"$graft" export "$work/photos.safetensors" -o "$work/photos.onnx" --quiet

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 600); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
peak_mb() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

measure() {
  local label=$1 port=$2 pid=$3 secs=$4 path=$5
  wait_up "http://127.0.0.1:$port/healthz"
  "$release/examples/load" --url "http://127.0.0.1:$port$path" --images "$images" \
    --clients "$clients" --seconds "$secs" > "$work/$label.json"
  local rss; rss=$(peak_mb "$pid")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  "$py" - "$work/$label.json" "$label" "$rss" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); r["server"] = sys.argv[2]; r["peak_rss_mb"] = float(sys.argv[3])
json.dump(r, open(sys.argv[1], "w"))
PY
}

start_graft() {
  local label=$1 window=$2 batch=$3 secs=$4 port; port=$(free_port)
  "$graft" serve "$work/photos.safetensors" --addr "127.0.0.1:$port" --batch-window-ms "$window" \
    --max-batch "$batch" >"$work/$label.log" 2>&1 &
  local pid=$!; pids+=("$pid")
  measure "$label" "$port" "$pid" "$secs" /v1/models/photos/predict
}
start_python() {
  local label=$1 secs=$2 port; port=$(free_port)
  "$py" bench/serve_reference.py "$work/photos.onnx" --port "$port" >"$work/$label.log" 2>&1 &
  local pid=$!; pids+=("$pid")
  measure "$label" "$port" "$pid" "$secs" /v1/models/photos/predict
}

echo "graft serve, $clients clients, ${seconds}s ..." >&2
start_graft graft 2 4 "$seconds"
echo "Python (FastAPI + onnxruntime), $clients clients, ${seconds}s ..." >&2
start_python python "$seconds"
for w in $windows; do
  echo "graft serve, batching window ${w} ms ..." >&2
  start_graft "graft-window-$w" "$w" 4 "$(( seconds / 4 ))"
done
for b in $batches; do
  echo "graft serve, batches of at most $b ..." >&2
  start_graft "graft-batch-$b" 2 "$b" "$(( seconds / 4 ))"
done

"$py" - "$work" bench/serve-results.json <<'PY'
import glob, json, os, sys
work, out = sys.argv[1], sys.argv[2]
runs = {os.path.basename(p)[:-5]: json.load(open(p)) for p in glob.glob(os.path.join(work, "*.json"))}
g, p = runs["graft"], runs["python"]
print(f"{'server':<22}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}{'503':>6}{'peak RSS MB':>13}")
for name in sorted(runs, key=lambda n: (n != "graft", n != "python", n)):
    r = runs[name]
    print(f"{name:<22}{r['throughput_rps']:>9.1f}{r['latency_ms']['p50']:>9.1f}{r['latency_ms']['p99']:>9.1f}"
          f"{r['failed']:>8}{r['busy_503']:>6}{r['peak_rss_mb']:>13.1f}")
print(f"graft / Python: throughput {g['throughput_rps'] / p['throughput_rps']:.2f}x, "
      f"p99 {g['latency_ms']['p99'] / p['latency_ms']['p99']:.2f}x, "
      f"peak RSS {g['peak_rss_mb'] / p['peak_rss_mb']:.2f}x")
json.dump(runs, open(out, "w"), indent=1)
PY
