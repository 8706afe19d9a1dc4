#!/usr/bin/env bash
# The main job: installs what is missing, builds, verifies every backend against the golden
# data (exit 1 on any FAILED), then prints a per-layer benchmark table (quick run).
#   ci/main.sh                 every golden file of data/golden (what a user runs)
#   ci/main.sh --golden FILE   only FILE (the clean room of .ci/run verifies one file: the
#                              release tier verifies the golden data on every submission)
#   ci/main.sh --no-bench      without the benchmark table (the clean room: its stage time)
#   ci/main.sh --mode M        anx verify's --mode: all (default), isolated or chained (the clean
#                              room verifies isolated only: the release tier runs both modes of
#                              every backend on the same file and commit)
set -euo pipefail
cd "$(dirname "$0")/.."
golden=() bench=1 mode=all
while [ $# -gt 0 ]; do
  case "$1" in
    --golden)
      [ -f "${2:-}" ] || { echo "ci/main.sh: --golden needs an existing file (got '${2:-}')" >&2; exit 2; }
      golden=(--golden "$2"); shift 2 ;;
    --no-bench) bench=0; shift ;;
    --mode)
      case "${2:-}" in all|isolated|chained) ;; *) echo "ci/main.sh: --mode needs all, isolated or chained (got '${2:-}')" >&2; exit 2 ;; esac
      mode=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "ci/main.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
bash ci/install.sh
cmake --preset release >/dev/null
cmake --build --preset release
# The gate requires every backend this machine can run (exit 1 when one is SKIPPED as a whole):
# ref, those whose libraries ci/install.sh installs (onednn, cblas, libxsmm), and the ISA backends when
# the CPU has their flags.  A new backend adds itself here.
require=ref,onednn,cblas,libxsmm
if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then require+=,avx2; fi
if grep -qw avx512f /proc/cpuinfo; then require+=,avx512; fi
# oneDNN 2.6 has f32 Winograd only on avx512_core (F, BW, VL, DQ)
if grep -qw avx512bw /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo && grep -qw avx512dq /proc/cpuinfo; then require+=,onednn-wino; fi
./build/release/anx verify --backend all --mode "$mode" --require "$require" ${golden[@]+"${golden[@]}"} --json build/release/verify.json
if [ "$bench" -eq 0 ]; then
  echo "main: --no-bench: no benchmark table"
elif [ -x build/release/anx-bench ] && [ -f bench/report.py ]; then
  python3 bench/report.py --build build/release --out build/release/bench-report --quick
  # Every run goes into the benchmark history (one SQLite file; ANX_HISTORY_DB points it
  # elsewhere, e.g. a CI cache), and the fleet table compares this machine with the others there.
  db=${ANX_HISTORY_DB:-build/history.sqlite}
  python3 bench/history.py record "$db" build/release/bench-report/report.json
  python3 bench/history.py fleet "$db"
else
  echo "main: anx-bench not built (libbenchmark-dev missing?): no benchmark table"
fi
