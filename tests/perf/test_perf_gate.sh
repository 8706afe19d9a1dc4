#!/usr/bin/env bash
# ci/perf-gate.sh's argument errors: each exits 2 with one line on stderr naming the culprit,
# before anything is built (the output directory given is never created).  A full gate run
# builds two trees and takes minutes; docs/bench.md shows one.
set -u
gate="$(cd "$(dirname "$0")/../.." && pwd)/ci/perf-gate.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

# A saved run that compare.py refuses: anx-bench JSON with 2 repetitions.
cat >"$tmp/two-reps.json" <<'JSON'
{"context": {"anx_threads": "2", "anx_machine_key": "k"}, "benchmarks": [
 {"name": "step/x/batch:2/real_time", "run_type": "iteration", "real_time": 1.0, "time_unit": "ms"},
 {"name": "step/x/batch:2/real_time", "run_type": "iteration", "real_time": 1.1, "time_unit": "ms"}]}
JSON
echo '{"benchmarks": []}' >"$tmp/not-anx.json"

case_() { # case_ LABEL CULPRIT ARGS...
  local label=$1 culprit=$2
  shift 2
  "$gate" --out "$tmp/out" "$@" >"$tmp/stdout" 2>"$tmp/stderr"
  local rc=$? lines
  lines=$(wc -l <"$tmp/stderr")
  if [ $rc -eq 2 ] && [ "$lines" -eq 1 ] && grep -qF -- "$culprit" "$tmp/stderr" && [ ! -s "$tmp/stdout" ] \
      && [ ! -e "$tmp/out" ]; then
    echo "ok   $label: $(cat "$tmp/stderr")"
  else
    echo "FAIL $label: exit $rc, $lines stderr lines (want 2, 1 naming '$culprit', nothing built):"
    cat "$tmp/stderr"
    fails=$((fails + 1))
  fi
}

case_ "no arguments" "BASE_COMMIT or --baseline"
case_ "unknown option" "--bogus" --bogus HEAD
if git -C "$(dirname "$gate")" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  case_ "a commit that does not resolve" "no-such-commit-1234" no-such-commit-1234
else # a source tree without git (an exported archive)
  case_ "BASE_COMMIT without a git checkout" "not a git checkout" no-such-commit-1234
fi
case_ "too many arguments" "'extra'" HEAD filter extra
case_ "fewer than 9 repetitions" "--rounds 2 x --reps 3" --rounds 2 HEAD
case_ "--reps not a number" "--reps: 'x'" --reps x HEAD
case_ "--batches not a list" "--batches: '2,,3'" --batches 2,,3 HEAD
case_ "--alpha out of range" "--alpha: '1.5'" --alpha 1.5 HEAD
case_ "--rounds without a value" "--rounds: needs a value" --rounds
case_ "an unreadable baseline" "$tmp/none.json" --baseline "$tmp/none.json"
case_ "a baseline with 2 repetitions" "2 repetitions" --baseline "$tmp/two-reps.json"
case_ "a baseline that is not anx JSON" "not-anx.json" --baseline "$tmp/not-anx.json"
case_ "--baseline and two more arguments" "'b'" --baseline "$tmp/two-reps.json" a b

"$gate" --help >"$tmp/help" 2>&1
if [ $? -eq 0 ] && grep -q "^usage: ci/perf-gate.sh" "$tmp/help"; then echo "ok   --help"; else echo "FAIL --help"; fails=$((fails + 1)); fi

[ $fails -eq 0 ] && echo "all cases passed" || echo "$fails cases failed"
[ $fails -eq 0 ]
