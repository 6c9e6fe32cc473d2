#!/usr/bin/env bash
# The full power-cut run of the virtual board (issue #27; docs/deploy.md, "The virtual
# board"): the same scenario as tests/tests/virtual_board.rs, with N power cuts (qemu
# SIGKILLed at a seeded random point of a deploy over the UART, the disk on cache=none),
# each followed by a boot that must bring the service back by itself with the old or the
# new model, and a `tools deploy` that must complete. Prints the outcome table.
#
# Usage: tools/board/powercut.sh [N=20] [SEED=now]
# Needs what the test needs (root, qemu-system-aarch64, the aarch64 cross linker); builds
# the binaries and, if not cached, the board image (tools/board/build-image.sh, ~7 min).
# Takes ~1.5-2.5 min per cut on 2 cores (a boot under emulation is 25-110 s, by load).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-20}
SEED=${2:-$(date +%s)}
nice -n 10 cargo build --release -p tools -p device
nice -n 10 cargo build --release --target aarch64-unknown-linux-gnu -p device
IMAGE=$(tools/board/build-image.sh)
WORK=${VBOARD_WORK:-target/vboard-powercut}
rm -rf "$WORK"
mkdir -p "$WORK"
python3 tools/board/vboard.py --bin-dir target/release --no-bench \
  --device target/aarch64-unknown-linux-gnu/release/device \
  --image "$IMAGE" --work "$WORK" --cuts "$N" --seed "$SEED" --report "$WORK/report.json"
