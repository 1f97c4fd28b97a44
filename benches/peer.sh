#!/usr/bin/env bash
# The stable entry point for the peer comparison (../shared/peers/):
#   benches/peer.sh INPUT_CSV OUTPUT_CSV
# runs the already-built release binary over the harness's headerless input
# (ts_ms,site_id,sensor_id,metric,value) and writes the harness's output CSV
# (sensor_id,window_start_ms,cnt,avg_v,max_v) of windows whose average is above the threshold.
# It builds nothing: run `cargo build --release` first. Warnings (JSON lines) go to
# OUTPUT_CSV.warnings.jsonl, the summary to stderr.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 INPUT_CSV OUTPUT_CSV" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${YUJING_BIN:-${CARGO_TARGET_DIR:-$HERE/../target}/release/yujing}
[ -x "$BIN" ] || { echo "no release binary at $BIN: run cargo build --release (or set YUJING_BIN)" >&2; exit 2; }
CFG=${YUJING_PEER_CONFIG:-${TMPDIR:-/tmp}/yujing-peer-config}
# the workload's registry: 10,000 sensors, site = sensor // 10, metric = METRICS[sensor % 4]
if [ ! -s "$CFG/sites.csv" ] || [ "$HERE/peer.sh" -nt "$CFG/sites.csv" ]; then
  mkdir -p "$CFG"
  rm -f "$CFG/sites.yaml"
  awk 'BEGIN {
    split("pm10 noise_db water_level visitors", m, " ");
    print "site,kind,department,device,metrics";
    for (id = 0; id < 10000; id++) printf "%d,environment,peer,%d,%s\n", int(id / 10), id, m[id % 4 + 1];
  }' > "$CFG/sites.csv.tmp"
  mv "$CFG/sites.csv.tmp" "$CFG/sites.csv"
fi
rm -rf "$CFG/rules"; cp -r "$HERE/peer/rules" "$CFG/rules"; cp "$HERE/peer/yujing.toml" "$CFG/yujing.toml"
# glibc's allocator asks for transparent huge pages: the engine reads per-device state at random,
# and fewer page-table walks measured 12-13 % less time here (benches/README.md, seventh session)
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1}
exec "$BIN" replay --config "$CFG" --format csv --input "$1" --output-csv "$2" \
  --output "$2.warnings.jsonl" --dead-letter "$2.dead-letter.jsonl"
