#!/usr/bin/env bash
# The GPU check of the CUDA backend, in one call on a machine with a GPU:
# configure with -DGANTRY_CUDA=ON, build, run the `cuda` ctest label (and
# the backend unit test), run compute-sanitizer's memcheck over the CUDA op
# test, and write the logs to $OUT (or ./device-out). Ends with a summary
# table; exits non-zero if a step failed.
#
# Build dependencies: where pkg-config does not find libuv, msgpack, cmocka
# and pcre2 (the CUDA image lacks them and Open MPI), the Debian packages
# that scripts/device-deps.sh downloaded into .devdeps/ are unpacked into
# $GT_DEPS (default /tmp/gt-deps; never into /), their pkg-config files and
# Open MPI pointed there. From the tool library's device runner:
#   here:   ./scripts/device-deps.sh     (once; .devdeps/ is git-ignored)
#   device: run(command="bash scripts/device-check.sh", carry=[".devdeps"],
#               timeout_s=540)
# Environment: GT_BUILD (build folder, default build-device), GT_TARGETS
# (build only these targets, e.g. "test_cuda_ops test_backend", for a quick
# check), GT_FORCE_DEVDEPS=1 (use .devdeps even where the system has the
# packages: how this script's unpacking was tested without a GPU).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${OUT:-$root/device-out}
mkdir -p "$out"
build=${GT_BUILD:-build-device}
jobs=$(nproc 2>/dev/null || echo 4)
summary=()
fails=0
step() { # name, status
    summary+=("$(printf '%-28s %s' "$1" "$2")")
    [ "$2" = ok ] || [ "$2" = skipped ] || fails=$((fails + 1))
}

{
    date -u
    uname -a
    nvidia-smi 2>&1 || echo "nvidia-smi: not available"
    /usr/local/cuda/bin/nvcc --version 2>&1 || nvcc --version 2>&1
    cmake --version | head -1
} > "$out/env.txt" 2>&1

# ---- dependencies ----
cmake_extra=()
have_all=1
for m in libuv msgpack libpcre2-8 cmocka; do pkg-config --exists "$m" 2>/dev/null || have_all=0; done
command -v mpicc > /dev/null 2>&1 || have_all=0
if [ "$have_all" = 0 ] || [ "${GT_FORCE_DEVDEPS:-0}" = 1 ]; then
    if ! ls .devdeps/*.deb > /dev/null 2>&1; then
        echo "missing build dependencies and no .devdeps/*.deb to unpack: run scripts/device-deps.sh here and carry .devdeps" | tee -a "$out/env.txt"
        exit 2
    fi
    P=${GT_DEPS:-/tmp/gt-deps}
    mkdir -p "$P"
    for d in .devdeps/*.deb; do dpkg -x "$d" "$P"; done
    L=$P/usr/lib/x86_64-linux-gnu
    # The .pc files name /usr; point them into the prefix.
    for pc in "$L"/pkgconfig/*.pc "$P"/usr/share/pkgconfig/*.pc; do
        [ -f "$pc" ] && sed -i -E "s#(=|-I|-L)/usr#\1$P/usr#g" "$pc"
    done
    export PKG_CONFIG_PATH="$L/pkgconfig:$P/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
    export CMAKE_PREFIX_PATH="$P/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
    export LD_LIBRARY_PATH="$L:$L/openmpi/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export OPAL_PREFIX="$P/usr/lib/x86_64-linux-gnu/openmpi"
    # No mpicc wrapper in the prefix: FindMPI takes the header and library.
    cmake_extra+=(-DMPI_C_COMPILER="$P/none" -DMPI_C_HEADER_DIR="$L/openmpi/include"
                  -DMPI_C_LIB_NAMES=mpi -DMPI_mpi_LIBRARY="$L/libmpi.so.40")
    echo "dependencies unpacked into $P from $(ls .devdeps/*.deb | wc -l) packages" >> "$out/env.txt"
fi

# ---- configure and build ----
gen=()
command -v ninja > /dev/null 2>&1 && gen=(-G Ninja)
[ -f "$build/CMakeCache.txt" ] && gen=()
if cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DGANTRY_CUDA=ON \
        "${cmake_extra[@]}" > "$out/configure.log" 2>&1; then
    step configure ok
else
    step configure FAILED
    tail -30 "$out/configure.log"
fi
targets=()
for t in ${GT_TARGETS:-}; do targets+=(--target "$t"); done
if [ "$fails" = 0 ] && cmake --build "$build" -j "$jobs" "${targets[@]}" > "$out/build.log" 2>&1; then
    step build ok
else
    [ "$fails" = 0 ] && { step build FAILED; tail -40 "$out/build.log"; }
fi

# ---- tests ----
if [ "$fails" = 0 ]; then
    (cd "$build" && ctest -L cuda -R "${GT_CTEST_R:-.}" --output-on-failure) > "$out/ctest.log" 2>&1
    rc=$?
    if grep -q "(Skipped)" "$out/ctest.log"; then
        step "ctest -L cuda" skipped # no GPU visible: never a pass
    elif [ $rc = 0 ]; then
        step "ctest -L cuda" ok
    else
        step "ctest -L cuda" FAILED
    fi
    if [ -x "$build/tests/test_backend" ]; then
        (cd "$build" && ctest -R '^test_backend$' --output-on-failure) >> "$out/ctest.log" 2>&1 \
            && step "ctest test_backend" ok || step "ctest test_backend" FAILED
    fi
    san=/usr/local/cuda/bin/compute-sanitizer
    command -v compute-sanitizer > /dev/null 2>&1 && san=compute-sanitizer
    if [ ! -x "$(command -v "$san")" ]; then
        step "compute-sanitizer" "FAILED (not found)"
    else
        "$san" --tool memcheck --leak-check full --error-exitcode 99 \
            "$build/tests/test_cuda_ops" > "$out/memcheck.log" 2>&1
        rc=$?
        if [ $rc = 0 ]; then step "memcheck test_cuda_ops" ok
        elif [ $rc = 77 ]; then step "memcheck test_cuda_ops" skipped
        else step "memcheck test_cuda_ops" "FAILED (exit $rc)"; fi
        "$san" --tool racecheck --error-exitcode 99 \
            "$build/tests/test_cuda_ops" > "$out/racecheck.log" 2>&1
        rc=$?
        if [ $rc = 0 ]; then step "racecheck test_cuda_ops" ok
        elif [ $rc = 77 ]; then step "racecheck test_cuda_ops" skipped
        else step "racecheck test_cuda_ops" "FAILED (exit $rc)"; fi
    fi
fi

printf '%s\n' "${summary[@]}" | tee "$out/summary.txt"
grep -E "cuda backend on|SKIP|mismatch|differs|FAILED|Passed|Failed|tests passed" "$out/ctest.log" 2>/dev/null | head -40
[ "$fails" = 0 ]
