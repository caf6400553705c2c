#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library for graft's optional `onnxruntime` feature (`--backend ort`).
#
#   scripts/fetch-onnxruntime.sh [DIR]
#
# Downloads the onnxruntime wheel from PyPI with pip (`pip`, else `python3 -m pip`), takes only the
# library out of it, checks it against the sha256 the wheel's RECORD lists, and installs it as
# DIR/libonnxruntime.so.1.32.0. DIR defaults to where graft looks when ORT_DYLIB_PATH is unset:
# <graft cache>/onnxruntime/1.32.0, the cache being $GRAFT_CACHE, else $XDG_CACHE_HOME/graft, else
# ~/.cache/graft. Prints the library's path. Linux only (tested on x86-64).
set -euo pipefail

version=1.32.0
if [ "$(uname -s)" != Linux ]; then
  echo "fetch-onnxruntime.sh handles Linux only; elsewhere set ORT_DYLIB_PATH to an ONNX Runtime $version library" >&2
  exit 1
fi
lib="libonnxruntime.so.$version"
if [ -n "${GRAFT_CACHE:-}" ]; then
  cache="$GRAFT_CACHE"
elif [ -n "${XDG_CACHE_HOME:-}" ]; then
  cache="$XDG_CACHE_HOME/graft"
else
  cache="$HOME/.cache/graft"
fi
dir="${1:-$cache/onnxruntime/$version}"
target="$dir/$lib"
# Installed only after the check below passed (by an atomic rename), so a present file is a good one.
if [ -f "$target" ]; then
  echo "$target"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
args=(download --no-deps --only-binary=:all: --quiet --disable-pip-version-check -d "$tmp" "onnxruntime==$version")
if ! { command -v pip >/dev/null 2>&1 && pip "${args[@]}" >&2; }; then
  python3 -m pip "${args[@]}" >&2
fi
wheels=("$tmp"/onnxruntime-"$version"-*.whl)
[ -f "${wheels[0]}" ] || { echo "pip gave no onnxruntime $version wheel" >&2; exit 1; }

# Extract the one library and compare it with the wheel's own record of its sha256.
python3 - "${wheels[0]}" "onnxruntime/capi/$lib" "$tmp/$lib" <<'PY'
import base64, hashlib, sys, zipfile

wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    if member not in names:
        sys.exit(f"{wheel} has no {member}")
    data = z.read(member)
    record = next((n for n in names if n.endswith(".dist-info/RECORD")), None)
    if record is None:
        sys.exit(f"{wheel} has no RECORD")
    rows = [line.split(",") for line in z.read(record).decode().splitlines()]
want = next((row[1] for row in rows if row[0] == member and len(row) > 1), None)
got = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
if got != want:
    sys.exit(f"{member}: {got}, but the wheel's RECORD says {want}")
if not data.startswith(b"\x7fELF"):
    sys.exit(f"{member} is not an ELF shared library")
with open(out, "wb") as f:
    f.write(data)
PY

mkdir -p "$dir"
cp "$tmp/$lib" "$target.partial.$$"
mv -f "$target.partial.$$" "$target"
echo "$target"
