#!/usr/bin/env bash
# Builds every fuzz target (debug, AddressSanitizer) and runs each for SECONDS (default 60), with
# a corpus seeded from the repository's own files (test fixtures, zoo manifests, demo images).
# Prints one line per target: runs, seconds, and whether libFuzzer found a crash; exits non-zero
# when any target crashed (its input is under fuzz/artifacts/TARGET/).
#
#     fuzz/run.sh 60
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain RUSTC_BOOTSTRAP=1 is set
# here. Logs go to fuzz/logs/TARGET.log.
set -euo pipefail

secs=${1:-60}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cd "$here"
export RUSTC_BOOTSTRAP=1

targets=(tfjs_model_json tflite torch_checkpoint wav image saved_model zoo_manifest onnx_base)

# seed TARGET PREFIX FILE...: copies each file into corpus/TARGET, named by its hash, after
# PREFIX (bytes a target reads before the file itself, e.g. the image target's mode byte).
seed() {
    local target=$1 prefix=$2
    shift 2
    mkdir -p "corpus/$target"
    for f in "$@"; do
        [ -f "$f" ] || continue
        local name
        name=$(sha256sum "$f" | cut -c1-16)
        { printf "$prefix"; cat "$f"; } >"corpus/$target/$name"
    done
}

seed torch_checkpoint '' "$root"/tests/fixtures/torch/*
seed wav '' $(find "$root/tests/fixtures/audio" -name '*.wav' | sort | head -n 12)
seed image '\000' "$root"/tests/fixtures/images/* \
    $(find "$root/examples/data" -name '*.png' -o -name '*.jpg' | sort | head -n 8)
seed image '\006' $(find "$root/examples/data" -name '*.jpg' | sort | head -n 2)
seed saved_model '' "$root"/tests/fixtures/compat/*.safetensors
seed zoo_manifest '' "$root"/zoo/*.json
seed onnx_base '' "$root"/tests/fixtures/models/*.onnx
seed tfjs_model_json '' $(find "$root/converters/tests" -name '*.json' | sort | head -n 20)
seed tflite '' $(find "$root" -name '*.tflite' -not -path '*/target/*' | head -n 2)

cargo fuzz build --dev

mkdir -p logs
status=0
printf '%-18s %10s %8s  %s\n' target runs seconds result
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    set +e
    cargo fuzz run --dev "$t" "corpus/$t" -- -max_total_time="$secs" -timeout=30 \
        -rss_limit_mb=2048 >"logs/$t.log" 2>&1
    rc=$?
    set -e
    done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "logs/$t.log" | tail -n 1 || true)
    runs=$(echo "$done_line" | awk '{print $2}')
    took=$(echo "$done_line" | awk '{print $5}')
    if [ "$rc" -eq 0 ]; then
        result="no crash"
    else
        result="CRASH (exit $rc): see fuzz/logs/$t.log"
        status=1
    fi
    printf '%-18s %10s %8s  %s\n' "$t" "${runs:--}" "${took:--}" "$result"
done
exit $status
