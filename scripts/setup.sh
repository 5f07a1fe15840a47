#!/usr/bin/env bash
# Installs what livefs's tests, demo and benchmarks use, on Debian bookworm,
# as root: the squashfs writers and readers that serve as oracles and
# anchors, FUSE, the codecs' reference tools, and for the live boot QEMU,
# a static busybox for the guest and the medium's file system tools.
set -euo pipefail
need=(squashfs-tools squashfs-tools-ng squashfuse fuse3 fuse-overlayfs mtools
      xz-utils zstd lz4 lzop gzip attr util-linux kmod hyperfine
      qemu-system-x86 busybox-static e2fsprogs dosfstools xorriso file gcc libc6-dev)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin
go version
go mod download
