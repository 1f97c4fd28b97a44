#!/usr/bin/env bash
# The stable entry point for the Numenta Anomaly Benchmark:
#   benches/nab.sh NAB_DIR OUT_DIR
# runs the default anomaly model (models/anomaly.toml) over every series in NAB_DIR/data and
# writes NAB's result layout under OUT_DIR: OUT_DIR/yujing/<category>/yujing_<file>.csv
# (timestamp,value,anomaly_score,label), so NAB's own scorer can read it, plus
# OUT_DIR/final_results.json and the report page OUT_DIR/yujing.html. Prints the three profile
# scores (fixed threshold and NAB-optimised). It builds nothing: run `cargo build --release`
# first (or set YUJING_BIN).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 NAB_DIR OUT_DIR" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${YUJING_BIN:-${CARGO_TARGET_DIR:-$HERE/../target}/release/yujing}
[ -x "$BIN" ] || { echo "no release binary at $BIN: run cargo build --release (or set YUJING_BIN)" >&2; exit 2; }
mkdir -p "$2"
exec "$BIN" backtest --nab "$1" --model "$HERE/../models/anomaly.toml" --out "$2" \
  --html "$2/yujing.html"
