#!/usr/bin/env bash
# graft vs the Python way (onnxruntime, scikit-learn, Keras, faiss) on this machine, one command:
#   bench/compare.sh [--runs N]      (default 5 runs; prints medians, writes bench/results.json)
# Needs cargo and python3 (with venv); installs the Python side into bench/.venv on first use.
set -euo pipefail
runs=5
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    *) echo "usage: bench/compare.sh [--runs N]" >&2; exit 2 ;;
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

# graft in release; with its onnxruntime backend too once the build has that feature.
features=()
if grep -q '^onnxruntime *=' Cargo.toml; then features=(--features onnxruntime); fi
cargo build --release --quiet --bin graft --example compare "${features[@]}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
release=${CARGO_TARGET_DIR:-target}/release
cp "$release/graft" "$release/examples/compare" "$work/"
ort_lib=$("$py" -c 'import glob, onnxruntime, os; print(glob.glob(os.path.dirname(onnxruntime.__file__) + "/capi/libonnxruntime.so.*")[0])')

# Runs a command with its stderr (driver and TensorFlow chatter) shown only when it fails.
quiet() { "$@" 2> "$work/stderr.log" || { cat "$work/stderr.log" >&2; return 1; }; }

for i in $(seq "$runs"); do
  echo "run $i of $runs ..." >&2
  quiet "$work/compare" --out "$work/data" > "$work/graft-$i.json"
  if [[ ${#features[@]} -gt 0 ]]; then
    quiet env ORT_DYLIB_PATH="$ort_lib" "$work/compare" --out "$work/ort" --backend ort --embed-only > "$work/graft-ort-$i.json"
  fi
  quiet "$py" bench/reference.py bench "$work/data" > "$work/reference-$i.json"
  quiet "$py" bench/reference.py measure -- "$work/graft" train --data examples/data/tuxpaint-dev --no-cache \
    --device cpu --quiet --json -o "$work/recognizer.safetensors" > "$work/e2e-graft-$i.json"
  if [[ ${#features[@]} -gt 0 ]]; then
    quiet env ORT_DYLIB_PATH="$ort_lib" "$py" bench/reference.py measure -- "$work/graft" train --backend ort \
      --data examples/data/tuxpaint-dev --no-cache --device cpu --quiet --json -o "$work/recognizer.safetensors" \
      > "$work/e2e-graft-ort-$i.json"
  fi
  quiet "$py" bench/reference.py measure -- "$py" bench/reference.py e2e examples/data/tuxpaint-dev "$work/data" \
    > "$work/e2e-python-$i.json"
done
"$py" bench/reference.py report "$work" bench/results.json
