#!/usr/bin/env bash
# The main job: installs what is missing, builds, verifies every backend against the golden
# data (exit 1 on any FAILED), then prints a per-layer benchmark table (quick run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/install.sh
cmake --preset release >/dev/null
cmake --build --preset release
# The gate requires every backend this machine can run (exit 1 when one is SKIPPED as a whole):
# ref, those whose libraries ci/install.sh installs (onednn, cblas), and the ISA backends when
# the CPU has their flags.  A new backend adds itself here.
require=ref,onednn,cblas
if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then require+=,avx2; fi
if grep -qw avx512f /proc/cpuinfo; then require+=,avx512; fi
./build/release/anx verify --backend all --require "$require" --json build/release/verify.json
if [ -x build/release/anx-bench ] && [ -f bench/report.py ]; then
  python3 bench/report.py --build build/release --out build/release/bench-report --quick
  # Every run goes into the benchmark history (one SQLite file; ANX_HISTORY_DB points it
  # elsewhere, e.g. a CI cache), and the fleet table compares this machine with the others there.
  db=${ANX_HISTORY_DB:-build/history.sqlite}
  python3 bench/history.py record "$db" build/release/bench-report/report.json
  python3 bench/history.py fleet "$db"
else
  echo "main: anx-bench not built (libbenchmark-dev missing?): no benchmark table"
fi
