#!/usr/bin/env bash
# The KNN row of bench/compare.sh alone, graft and faiss alternating in one run:
#   bench/knn_compare.sh [RUNS]      (default 5; PY: the Python with faiss-cpu, scikit-learn and
#                                     numpy of bench/requirements.txt, default bench/.venv/bin/python)
# Prints each side's times, the medians and graft / faiss.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
py=${PY:-bench/.venv/bin/python}
cargo build --release --quiet --example compare
compare=${CARGO_TARGET_DIR:-target}/release/examples/compare
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for i in $(seq "$runs"); do
  "$compare" --out "$out" --knn-only > "$out/graft-$i.json"
  "$py" bench/reference.py knn "$out" > "$out/reference-$i.json"
done
"$py" - "$out" "$runs" <<'PY'
import json, statistics, sys
d, n = sys.argv[1], int(sys.argv[2])
graft = [json.load(open(f"{d}/graft-{i}.json"))["knn"]["seconds"] for i in range(1, n + 1)]
ref = [json.load(open(f"{d}/reference-{i}.json")) for i in range(1, n + 1)]
faiss = [r["faiss"]["seconds"] for r in ref]
print("graft  ", " ".join(f"{s:.4f}" for s in graft))
print("faiss  ", " ".join(f"{s:.4f}" for s in faiss))
g, f = statistics.median(graft), statistics.median(faiss)
agree = min(r["faiss"]["agree_with_graft"] for r in ref)
print(f"medians: graft {g:.4f} s, faiss-cpu IndexFlatIP {f:.4f} s ({ref[0]['faiss']['threads']} threads): "
      f"graft / faiss {g / f:.3f}x; answers agree {100 * agree:.1f} %")
PY
