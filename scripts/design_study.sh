#!/usr/bin/env bash
# The inverse-design study of issue 15, as run for its closing note (about 50 min on 2 cores):
# a metascan-small model trained 30 min on synthetic pairs, 10^4 held-out targets, a 10^6-probe
# database, retrieval over growing database sizes (plain and re-ranked), judged on the simulated
# bench beside the in-database oracle and a random probe; the parametric filters; prediction.
# Usage: scripts/design_study.sh [WORKDIR [PAIRS RUN]]   (needs `metascan` on PATH: .venv/bin)
# With PAIRS and RUN, the study uses that model and its training pairs (e.g. the 30-min run of
# `benchmarks/bench_models.py --scale`) instead of training its own.
set -euo pipefail
w="${1:-design_study}"
mkdir -p "$w"
if [ $# -ge 3 ]; then
    ln -sfn "$(realpath "$2")" "$w/pairs.h5"
    ln -sfn "$(realpath "$3")" "$w/run"
fi
cd "$w"
if [ ! -e pairs.h5 ]; then
    metascan sim pairs --count 20000 --seed 3 --replicas 2 --noise 0.01 --output pairs.h5
fi
[ -f run/model.pt ] || metascan train --pairs pairs.h5 --config metascan-small --epochs 200 \
    --batch-size 256 --time-budget-min 30 --output run --no-progress
# Held out: designs of another seed, never trained on (the world is the same spectral model).
metascan sim pairs --count 12500 --seed 99 --replicas 1 --noise 0.01 --output heldout.h5 --force
metascan design targets --model run --pairs heldout.h5 --split train --limit 10000 \
    --output targets.h5 --force
metascan design targets --model run --filter "bandpass x 600 40 0.8" \
    --filter "bandpass both 520 60 0.6" --filter "notch both 650 40 0.6" \
    --filter "longpass y 600 40 0.7" --filter "shortpass x 560 60 0.7" --output filters.h5 --force
metascan design probes --model run --count 1000000 --seed 5 --exclude pairs.h5 \
    --output probes.h5 --force --no-progress
n=$(python -c "from dataset.probes_file import read_probes; print(len(read_probes(['probes.h5'])))")
sizes="100,1000,10000,100000,$n"
metascan design retrieve --model run --probes probes.h5 --targets targets.h5 --top-k 3 \
    --database-sizes "$sizes" --output chosen.h5 --force
metascan design evaluate --designs chosen.h5 --targets targets.h5 --probes probes.h5 \
    --output evaluation --force --no-progress
metascan design retrieve --model run --probes probes.h5 --targets targets.h5 --top-k 3 \
    --database-sizes "$sizes" --spectra-db pairs.h5 --output chosen_rr.h5 --force
metascan design evaluate --designs chosen_rr.h5 --targets targets.h5 --probes probes.h5 \
    --output evaluation_rr --force --no-progress
for mode in plain rr; do
    extra=()
    [ "$mode" = rr ] && extra=(--spectra-db pairs.h5 --shortlist 1000)
    metascan design retrieve --model run --probes probes.h5 --targets filters.h5 --top-k 3 \
        --database-sizes "10000,$n" "${extra[@]}" --output "filters_$mode.h5" --force
    metascan design evaluate --designs "filters_$mode.h5" --targets filters.h5 --probes probes.h5 \
        --output "evaluation_filters_$mode" --force --no-progress
done
metascan design predict --model run --designs pairs.h5 --spectra-db pairs.h5 --output predicted.h5 --force
metascan design predict --model run --designs pairs.h5 --spectra-db pairs.h5 --top-k 5 --weighted \
    --output predicted_w5.h5 --force
