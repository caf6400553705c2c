#!/usr/bin/env bash
# Checks that an installed graft works without its source tree (issue 12's acceptance):
#
#   scripts/check-install.sh
#
# Clones this repository (its committed state) into a temporary folder, copies out the example data
# the checks use, installs graft from the clone with `cargo install --path CLONE --root DIR` (a
# debug build that shares this checkout's target folder, so dependencies are not rebuilt), moves
# the clone away, and then, from an empty folder with an empty GRAFT_CACHE and no GRAFT_ZOO, runs
# DIR/bin/graft: demo, train on photos (with plots), train on spoken words, doctor, report on both, pose,
# predict. Zoo models are built from their registry originals on first use ($GRAFT_MIRROR, when
# set, stands in for the registries); ONNX Runtime is fetched by `--backend auto` unless GRAFT_OFFLINE=1 (then tract).
# Prints which engine ran. Exits non-zero on the first failure.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

git clone -q "$repo" "$work/clone"
cp -r "$work/clone/examples/data/tuxpaint-dev" "$work/photos"
cp -r "$work/clone/tests/fixtures/audio/words" "$work/words"
cp "$work/clone/tests/fixtures/images/astronaut.png" "$work/person.png"

echo "== cargo install --path <clone> --root <dir>" >&2
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}" \
  cargo install --quiet --debug --locked --path "$work/clone" --root "$work/root"
mv "$work/clone" "$work/moved-away"

mkdir "$work/empty"
cd "$work/empty"
export GRAFT_CACHE="$work/cache"
unset GRAFT_ZOO ORT_DYLIB_PATH
graft="$work/root/bin/graft"

echo "== graft --version" >&2
"$graft" --version
echo "== graft demo" >&2
"$graft" demo --out-dir demo-out
echo "== graft train --data PHOTOS" >&2
"$graft" train --data "$work/photos" --plots photo-plots -o photos.safetensors
test -s photo-plots/confusion-matrix.png
echo "== graft train --base speech-embedding --data WORDS" >&2
"$graft" train --base speech-embedding --data "$work/words" -o words.safetensors
echo "== graft doctor --data PHOTOS" >&2
"$graft" --json doctor --data "$work/photos" | tail -n 1 | grep -q '"findings"'
echo "== graft report (photos, words)" >&2
"$graft" report photos.safetensors --data "$work/photos" -o photos.html
"$graft" report words.safetensors --data "$work/words" -o words.html
echo "== graft pose IMAGE" >&2
"$graft" pose "$work/person.png"
echo "== graft predict" >&2
"$graft" predict photos.safetensors "$work/photos/fish/"*.png | tail -3
echo "== graft engine" >&2
"$graft" engine
echo "check-install: all verbs worked from $work/empty without the source tree" >&2
