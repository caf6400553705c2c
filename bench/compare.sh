#!/usr/bin/env bash
# graft vs the Python way (onnxruntime, scikit-learn, Keras, faiss) on this machine, one command:
#   bench/compare.sh [--runs N] [--photos DIR]
# (default 5 runs; prints medians, writes bench/results.json). --photos: the labelled folder of the
# folder -> recognizer rows (default examples/data/tuxpaint-dev).
# Needs cargo and python3 (with venv); installs the Python side into bench/.venv on first use.
set -euo pipefail
runs=5
photos=examples/data/tuxpaint-dev
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --photos) photos=$(cd "$2" && pwd); shift 2 ;;
    *) echo "usage: bench/compare.sh [--runs N] [--photos DIR]" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."

venv=bench/.venv
if ! cmp -s bench/requirements.txt "$venv/requirements.txt"; then
  echo "installing the Python side into $venv ..." >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r bench/requirements.txt
  cp bench/requirements.txt "$venv/requirements.txt"
fi
py="$venv/bin/python"

# graft in release, default features (ONNX Runtime included).
cargo build --release --quiet --bin graft --example compare
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
release=${CARGO_TARGET_DIR:-target}/release
cp "$release/graft" "$release/examples/compare" "$work/"
ort_lib=$("$py" -c 'import glob, onnxruntime, os; print(glob.glob(os.path.dirname(onnxruntime.__file__) + "/capi/libonnxruntime.so.*")[0])')

# Runs a command with its stderr (driver and TensorFlow chatter) shown only when it fails.
quiet() { "$@" 2> "$work/stderr.log" || { cat "$work/stderr.log" >&2; return 1; }; }

# graft with its defaults, as a new user runs it: its own cache, where the one-time fetch of the
# ONNX Runtime library (measured here, once) puts the library `--backend auto` then finds.
export GRAFT_CACHE="$work/graft-cache"
unset ORT_DYLIB_PATH
quiet "$py" bench/reference.py measure -- "$work/graft" engine install --json > "$work/library-fetch.json"

for i in $(seq "$runs"); do
  echo "run $i of $runs ..." >&2
  quiet "$work/compare" --out "$work/data" --photos "$photos" > "$work/graft-$i.json"
  quiet env ORT_DYLIB_PATH="$ort_lib" "$work/compare" --out "$work/ort" --backend ort --embed-only > "$work/graft-ort-$i.json"
  quiet "$py" bench/reference.py bench "$work/data" > "$work/reference-$i.json"
  quiet "$py" bench/reference.py measure -- "$work/graft" train --data "$photos" --no-cache \
    --device cpu --quiet --json -o "$work/recognizer.safetensors" > "$work/e2e-graft-$i.json"
  quiet "$py" bench/reference.py measure -- "$work/graft" train --backend tract --data "$photos" --no-cache \
    --device cpu --quiet --json -o "$work/recognizer.safetensors" > "$work/e2e-graft-tract-$i.json"
  quiet "$py" bench/reference.py measure -- "$py" bench/reference.py e2e "$photos" "$work/data/e2e" \
    > "$work/e2e-python-$i.json"
done
"$py" bench/reference.py report "$work" bench/results.json
