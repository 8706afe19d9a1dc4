#!/usr/bin/env bash
# Fuzzes the safetensors reader and the PNG loader with libFuzzer (clang, ASan + UBSan) for a
# bounded time each, starting from the committed corpus.  What a run finds is written to
# build/fuzz/findings/<target>/ and the script fails; copy the file into
# tests/fuzz/corpus/<target>/ as regress_<what> once fixed, and ctest replays it from then on.
#   ci/fuzz.sh            60 s per target
#   ci/fuzz.sh 3600       an hour per target
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
bash ci/install.sh fuzz
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz --target fuzz_safetensors fuzz_png
status=0
for t in safetensors png; do
  work="build/fuzz/corpus-work/$t" found="build/fuzz/findings/$t"
  mkdir -p "$work" "$found"
  echo "fuzz: $t for ${seconds}s"
  if ! ASAN_OPTIONS=detect_leaks=1 ./build/fuzz/tests/fuzz/fuzz_$t "$work" "tests/fuzz/corpus/$t" \
        -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$found/" -print_final_stats=1 2>"build/fuzz/$t.log"; then
    echo "fuzz: $t FAILED; the input is in $found/, the log in build/fuzz/$t.log"
    tail -n 30 "build/fuzz/$t.log"
    status=1
  else
    grep -E "stat::number_of_executed_units|stat::new_units_added" "build/fuzz/$t.log" | sed "s/^/fuzz: $t /"
  fi
done
exit $status
