#!/usr/bin/env bash
# The CI scripts' argument handling: --help exits 0 and says what the script does; bad arguments
# exit 2 with one line naming the culprit, before anything is installed, built or mounted.
#   ci_scripts_args.sh SOURCE_DIR
set -uo pipefail
src=$1
failures=0
expect() { # expect STATUS PATTERN -- CMD...
  local want=$1 pat=$2; shift 3
  local out rc
  out=$("$@" 2>&1 </dev/null); rc=$?
  if [ $rc -ne "$want" ]; then
    echo "FAILED: '$*' exited $rc, not $want: $out"; failures=$((failures + 1)); return
  fi
  if [ "$want" -eq 2 ] && [ "$(printf '%s\n' "$out" | wc -l)" -ne 1 ]; then
    echo "FAILED: '$*' printed more than one line: $out"; failures=$((failures + 1)); return
  fi
  if ! printf '%s\n' "$out" | grep -qE -- "$pat"; then
    echo "FAILED: '$*' does not say /$pat/: $out"; failures=$((failures + 1)); return
  fi
  echo "ok: $* -> $rc"
}
expect 0 'empty Debian 12 root' -- bash "$src/ci/fresh.sh" --help
expect 2 "unknown argument '--bogus'" -- bash "$src/ci/fresh.sh" --bogus
expect 2 '--ref needs a value' -- bash "$src/ci/fresh.sh" --ref
if [ "$(id -u)" -eq 0 ]; then
  expect 2 "'no-such-ref' is not a commit" -- bash "$src/ci/fresh.sh" --ref no-such-ref
fi
expect 0 'seeded|sample' -- bash "$src/ci/sweep.sh" --help
expect 2 '--sample needs a count' -- bash "$src/ci/sweep.sh" --sample x
expect 2 '--seed needs a number' -- bash "$src/ci/sweep.sh" --seed
expect 2 "unknown argument '--bogus'" -- bash "$src/ci/sweep.sh" --bogus
expect 2 "unknown group 'bogus'" -- bash "$src/ci/install.sh" bogus
expect 0 'benchmark table' -- bash "$src/ci/main.sh" --help
expect 0 '--no-bench' -- bash "$src/ci/main.sh" --help
expect 2 "unknown argument '--bogus'" -- bash "$src/ci/main.sh" --bogus
expect 2 "--golden needs an existing file \(got 'no-such-file'\)" -- bash "$src/ci/main.sh" --golden no-such-file
expect 0 '--mode M' -- bash "$src/ci/main.sh" --help
expect 2 "--mode needs all, isolated or chained \(got 'both'\)" -- bash "$src/ci/main.sh" --mode both
[ $failures -eq 0 ] || { echo "ci_scripts_args: $failures FAILED"; exit 1; }
echo "ci_scripts_args: passed"
