#!/usr/bin/env bash
# Live boot time (issue: live boot): boots the demo live system (Debian's
# kernel in QEMU, livefs initramfs, bundles on an ext4 medium, RAM changes)
# BENCH_RUNS times with livefs.debug and prints the kernel's time to /init,
# the time to /sbin/init and the init's steps.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
go run ./internal/livetest/livedemo -dir "${BENCH_DIR:-/tmp/livefs-bench}/boot" -time "${BENCH_RUNS:-5}" | grep -E '^\|| QEMU'
