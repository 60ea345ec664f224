#!/bin/sh
# Prints tessera.pc, the pkg-config file `make install` writes.
# Usage: tessera-pc.sh PREFIX LIBDIR INCLUDEDIR VERSION
# A shared link needs only -ltessera (libtessera.so records its own dependencies); a
# static one (pkg-config --static) also needs oneDNN, protobuf-c, libpng, libjpeg, zlib, libm and
# OpenMP: protobuf-c, libpng, libjpeg and zlib through their own .pc files, the others as flags
# (Debian's oneDNN ships no .pc file; -fopenmp links gcc's libgomp).
set -e
[ $# -eq 4 ] || { echo "usage: tessera-pc.sh PREFIX LIBDIR INCLUDEDIR VERSION" >&2; exit 2; }
prefix=$1 libdir=$2 includedir=$3 version=$4
# Paths under the prefix are written relative to ${prefix}, so the file stays true
# when pkg-config is told to relocate it (--define-prefix).
rel() { case "$1" in "$prefix"/*) echo "\${prefix}${1#"$prefix"}" ;; *) echo "$1" ;; esac; }
cat <<PC
prefix=$prefix
libdir=$(rel "$libdir")
includedir=$(rel "$includedir")

Name: tessera
Description: C11 deep-learning engine: train CNNs, decompose them into per-class modules, compose models
Version: $version
Requires.private: libprotobuf-c libpng libjpeg zlib
Libs: -L\${libdir} -ltessera
Libs.private: -ldnnl -lm -fopenmp
Cflags: -I\${includedir}
PC
