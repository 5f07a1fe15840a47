#!/usr/bin/env bash
# The main job on a built-in default: boot a live system whose root file
# system is served by livefs from .sb bundles, on Debian's kernel in QEMU,
# with nothing but FUSE in the kernel (no squashfs, loop, overlayfs, aufs).
# On a terminal you get a shell on the serial console (exit it to power
# off); otherwise it boots twice with persistent changes and shows a file
# written in the first boot surviving into the second.
# scripts/demo-tools.sh shows the inspection commands instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
export PATH=$PATH:/usr/local/go/bin
exec go run ./internal/livetest/livedemo -dir "${DEMO_DIR:-/tmp/livefs-demo}" "$@"
