#!/usr/bin/env bash
# The end-to-end demo on the simulated bench; grows with every stage.
# Today: design library -> chip layout with replicas + manifest -> KLayout DRC -> previews -> summary.
set -euo pipefail
out="${1:-demo_out}"
mkdir -p "$out"
metascan layout generate --count 2000 --seed 7 --output "$out/designs.h5"
metascan layout chip --designs "$out/designs.h5" --arrays 3 --rows 20 --cols 20 --replicas 2 \
    --thickness-nm 500 --output "$out/chip.gds"
metascan layout chip --designs "$out/designs.h5" --arrays 3 --rows 20 --cols 20 --replicas 2 \
    --thickness-nm 500 --format oas --output "$out/chip_oasis.oas"
metascan layout drc "$out/chip.gds"
metascan layout preview --designs "$out/designs.h5" --manifest "$out/chip.h5" --output "$out"
echo "--- summary ---"
metascan layout info "$out/chip.h5"
echo "files:"
ls -l "$out"
