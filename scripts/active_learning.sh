#!/usr/bin/env bash
# Active learning on the simulated bench (issue 19): design -> fabricate and scan -> curate ->
# fine-tune -> design again, against a control fine-tuned on as many random-design pairs.
#
#   bash scripts/active_learning.sh DEMO_DIR WORK_DIR [TARGETS_PER_ROUND]
#
# DEMO_DIR holds a finished `make demo` (the chip's contrastive model and probes, its forward
# surrogate, its curated pairs and the fast bench config). Every round designs with the
# surrogate (hybrid: the best probes warm-start a PSO on the predicted weighted MSE), so what
# learning changes is the surrogate: it is fine-tuned on the measured pads of the designs it
# chose (with the demo chip's pairs mixed in at --old-fraction 0.5), or, the control, on the
# same number of measured random designs. Targets of both rounds are measured spectra of random
# 178 nm a-Si designs (sim pairs, noise 0.01) of two different seeds: the same family, fresh
# targets in round 2. Prints one JSON line per round-2 arm; reports land in WORK_DIR/*/report.
set -euo pipefail
demo="$1"
work="$2"
n="${3:-200}"
mkdir -p "$work"
cols=$(python -c "import math; print(math.ceil(math.sqrt($n)))")
common=(--model "$demo/runs/chip" --probes "$demo/design/probes.h5" --spectra-db "$demo/chip_pairs.h5"
        --thickness-nm 178 --method hybrid --iterations 10 --particles 50 --no-progress)

measure() {  # measure NAME: fabricate + scan + process + curate the chip WORK/NAME/chip.gds
    local dir="$work/$1"
    metascan sim truth --manifest "$dir/chip.h5" --config "$demo/bench-fast.toml" --output "$dir/truth.h5" --force
    rm -rf "$dir/scans" "$dir/spectra"
    metascan scan --config "$demo/bench-fast.toml" --manifest "$dir/chip.h5" --output "$dir/scans" --no-progress >/dev/null
    metascan process "$dir/scans" --manifest "$dir/chip.h5" --output "$dir/spectra" 2>/dev/null
}

design_round() {  # design_round NAME TARGETS SURROGATE
    local dir="$work/$1"
    rm -rf "$dir" && mkdir -p "$dir"
    metascan design chip --targets "$2" --cols "$cols" --surrogate "$3" --chip-id "$1" \
        --output "$dir/chip.gds" "${common[@]}"
    measure "$1"
    metascan design report --chip "$dir/chip.h5" --spectra "$dir/spectra" --output "$dir/report"
}

echo "--- targets: two fresh families of measured random-design spectra ---"
for seed in 21 22; do
    metascan sim pairs --count "$n" --seed "$seed" --thickness-nm 178 --noise 0.01 --replicas 1 \
        --output "$work/family_$seed.h5" --force
    rm -f "$work/targets_$seed.h5"
    metascan design targets --pairs "$work/family_$seed.h5" --split train --output "$work/targets_$seed.h5"
done

echo "--- round 1: design with the demo's surrogate, fabricate, scan, curate ---"
design_round round1 "$work/targets_21.h5" "$demo/runs/surrogate"
metascan curate "$work/round1/spectra" --manifest "$work/round1/chip.h5" --output "$work/round1/pairs.h5" --force
designed=$(python -c "from dataset.pairs_io import load_pairs; print(len(load_pairs('$work/round1/pairs.h5').design_id))")
side=$(python -c "import math; print(math.ceil(math.sqrt($designed)))")
rows=$((designed / side))

echo "--- control: as many random designs, on a chip of their own ---"
rm -rf "$work/control" && mkdir -p "$work/control"
metascan layout generate --count "$designed" --seed 31 --output "$work/control/designs.h5" --force
metascan layout chip --designs "$work/control/designs.h5" --arrays 1 --rows "$rows" --cols "$side" \
    --replicas 2 --companion 0 --thickness-nm 178 --chip-id control --output "$work/control/chip.gds" --force
measure control
metascan curate "$work/control/spectra" --manifest "$work/control/chip.h5" --output "$work/control/pairs.h5" --force

echo "--- fine-tune the surrogate on each (the demo chip's pairs mixed in at half of every epoch) ---"
for arm in round1 control; do
    rm -rf "$work/ft_$arm"
    metascan train --resume-from "$demo/runs/surrogate" --pairs "$work/$arm/pairs.h5" \
        --old-fraction 0.5 --epochs 30 --batch-size 64 --output "$work/ft_$arm" --no-progress
done

echo "--- round 2: fresh targets, designed by the base, the loop's and the control's surrogates ---"
design_round round2_base "$work/targets_22.h5" "$demo/runs/surrogate"
design_round round2_loop "$work/targets_22.h5" "$work/ft_round1"
design_round round2_control "$work/targets_22.h5" "$work/ft_control"
for arm in round2_base round2_loop round2_control; do
    python - "$work/$arm/report/report.json" "$arm" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(json.dumps({"arm": sys.argv[2], "pads": r["pads_usable"],
                  "measured_mse": r["mse"]["measured_vs_target"],
                  "promised_mse": r["mse"]["promised_vs_target"],
                  "model_error_mse": r["mse"]["measured_vs_promised_unweighted"]}))
PY
done
