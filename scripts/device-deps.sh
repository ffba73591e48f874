#!/usr/bin/env bash
# Downloads (here, with apt) the Debian packages that a Gantry build needs
# and the GPU machine's image lacks, into .devdeps/ at the repository root,
# for scripts/device-check.sh to unpack there (dpkg -x into a prefix, never
# into /). The device image (Ubuntu 24.04, CUDA 13.0, CMake, ninja) has no
# libuv, msgpack-c, cmocka, pcre2 or Open MPI development files; these are
# Debian 12's, whose libraries need a glibc no newer than the image's.
# Add .devdeps to .git/info/exclude and name it in the device call's carry.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$root/.devdeps"
cd "$root/.devdeps"
pkgs=(
  libuv1 libuv1-dev
  libmsgpackc2 libmsgpack-dev
  libcmocka0 libcmocka-dev
  libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libpcre2-dev
  libopenmpi3 libopenmpi-dev openmpi-common
  libhwloc15 libevent-core-2.1-7 libevent-pthreads-2.1-7 libpmix2 libfabric1 libucx0
  libnl-3-200 libnl-route-3-200 libibverbs1 librdmacm1 libpsm2-2 libltdl7 libnuma1 libmunge2
)
apt-get download "${pkgs[@]}"
du -sh "$root/.devdeps"
