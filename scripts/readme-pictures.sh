#!/usr/bin/env bash
# The README's pictures of graft's plots and report (doc/plots/*.png): trains on the shipped Tux
# Paint images (examples/plots.rs), writes the four charts as PNG, the report as HTML, and takes
# a screenshot of the report's top with Debian's headless chromium when it is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
report=target/plots/report.html
cargo run --release --example plots -- doc/plots "$report"
if command -v chromium >/dev/null; then
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1100,1500 \
        --screenshot="$PWD/doc/plots/report.png" "file://$PWD/$report" 2>/dev/null
    echo "wrote doc/plots/report.png"
else
    echo "no chromium: doc/plots/report.png not remade"
fi
