#!/usr/bin/env bash
# The test command: installs what is missing, configures, builds and runs every ctest test.
#   ci/test.sh            release build (warnings are errors)
#   ci/test.sh asan       AddressSanitizer + UndefinedBehaviorSanitizer build, every test but the
#                         soak (the golden gate there verifies one golden file, see README)
#   ci/test.sh release -L quick    extra arguments go to ctest (here: only the quick label;
#                         note that a -LE given here replaces the preset's exclusions)
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
shift || true
bash ci/install.sh
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset"
ctest --preset "$preset" "$@"
