#!/bin/sh
# Installs the Debian packages tessera needs, only those missing. One script for
# `make demo` and `make test`; needs root (or sudo) only when something is missing.
set -e
PKGS="gcc make libc6-dev libdnnl-dev zlib1g-dev libpng-dev libjpeg62-turbo-dev libprotobuf-c-dev protobuf-c-compiler libonnx-dev libonnx-testdata dataset-fashion-mnist clang libomp-dev libclang-rt-dev valgrind python3-numpy pkg-config libopenmpi-dev openmpi-bin"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing Debian packages:$missing"
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "error: missing packages:$missing; run as root: apt-get install$missing" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null || { echo "error: apt-get update failed" >&2; exit 1; }
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null || {
    echo "error: apt-get install$missing failed" >&2; exit 1; }
