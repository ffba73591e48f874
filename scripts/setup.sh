#!/usr/bin/env bash
# Installs the Debian packages Gantry needs (when missing) and builds it.
# Used by both README commands and by .ci/run.
#   scripts/setup.sh [BUILD_DIR]      (default: build)
#   GANTRY_SETUP_TESTS=1 scripts/setup.sh   also the packages only the tests need
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake pkg-config git python3 python3-numpy python3-pip
          openmpi-bin libopenmpi-dev libuv1-dev libmsgpack-dev libcmocka-dev libpcre2-dev
          python3-msgpack procps libhttp-parser-dev libjansson-dev python3-prometheus-client)
# Only for the tests (scripts/test.sh sets GANTRY_SETUP_TESTS=1): a one-node
# Slurm cluster with PMIx for tests/deploy/test_slurm.sh, curl, and the YAML
# and JSON-schema readers of the Kubernetes manifest checks.
TEST_PACKAGES=(slurm-wlm munge libpmix-dev curl python3-yaml python3-jsonschema)
if [ "${GANTRY_SETUP_TESTS:-0}" = 1 ]; then PACKAGES+=("${TEST_PACKAGES[@]}"); fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

BUILD_DIR=${1:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release ${GANTRY_CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)"
