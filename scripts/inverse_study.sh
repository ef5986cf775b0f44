#!/usr/bin/env bash
# The optimization study of issue 18, as run for its closing note (about 2.5 h on 2 cores, after
# scripts/design_study.sh has made WORKDIR's model, pairs, held-out pairs and 10^6-probe database):
# 1,000 held-out targets; PSO 30 x 100, the surrogate's PSO, random search, retrieval at as many
# calls, the hybrid warm (from the probes) and cold; all judged on the simulated bench and drawn on
# one figure; then, on 200 of the targets, --robust and --support-penalty against their controls.
# Usage: scripts/inverse_study.sh DESIGN_STUDY_DIR [OUT]   (needs `metascan` on PATH: .venv/bin)
set -euo pipefail
ds="$(realpath "$1")"
w="${2:-inverse_study}"
mkdir -p "$w"
cd "$w"
run="$ds/run" pairs="$ds/pairs.h5" probes="$ds/probes.h5"
metascan design targets --model "$run" --pairs "$ds/heldout.h5" --split train --limit 1000 \
    --output targets1k.h5 --force
metascan design targets --model "$run" --pairs "$ds/heldout.h5" --split train --limit 200 \
    --output targets200.h5 --force
[ -f surrogate/model.pt ] || metascan train --pairs "$pairs" --config metascan-small \
    --task surrogate --epochs 100 --batch-size 256 --time-budget-min 25 --val-every-steps 156 \
    --precision bf16 --output surrogate --no-progress
metascan evaluate --model surrogate --pairs "$pairs" --output eval_surrogate_model --force
opt=(--targets targets1k.h5 --particles 100 --seed 0 --threads 2 --force --no-progress)
metascan design optimize --model "$run" "${opt[@]}" --method pso --iterations 30 \
    --record-iterations 1,2,3,5,10,20 --output pso.h5
metascan design optimize --model surrogate "${opt[@]}" --method surrogate --iterations 10 \
    --record-iterations 1,2,3,5 --output surrogate_pso.h5
metascan design optimize --model "$run" "${opt[@]}" --method random --iterations 10 \
    --record-iterations 1,2,3,5 --output random.h5
metascan design optimize --model "$run" "${opt[@]}" --method hybrid --iterations 10 --steps 40 \
    --record-iterations 1,2,3,5 --probes "$probes" --output hybrid.h5
metascan design optimize --model "$run" "${opt[@]}" --method hybrid --iterations 10 --steps 40 \
    --record-iterations 1,2,3,5 --output hybrid_cold.h5
n=$(python -c "from dataset.probes_file import read_probes; print(len(read_probes(['$probes'])))")
metascan design retrieve --model "$run" --probes "$probes" --targets targets1k.h5 \
    --database-sizes "100,200,300,500,1000,2000,3000,$n" --output retrieval.h5 --force
for m in pso surrogate_pso random hybrid hybrid_cold; do
    metascan design evaluate --designs $m.h5 --targets targets1k.h5 --world "$pairs" \
        --output "eval_$m" --no-progress --force
done
metascan design evaluate --designs retrieval.h5 --targets targets1k.h5 --world "$pairs" \
    --probes "$probes" --output eval_retrieval --no-progress --force
metascan design compare --evaluation pso=eval_pso --evaluation surrogate=eval_surrogate_pso \
    --evaluation "random search=eval_random" --evaluation retrieval=eval_retrieval \
    --evaluation "hybrid (warm, probes)=eval_hybrid" --evaluation "hybrid (cold)=eval_hybrid_cold" \
    --output compare --force
small=(--targets targets200.h5 --iterations 10 --particles 100 --record-iterations 1,3 --seed 0
       --threads 2 --force --no-progress)
metascan design optimize --model "$run" "${small[@]}" --method pso --output r_plain.h5
metascan design optimize --model "$run" "${small[@]}" --method pso --robust 4 --output r_robust.h5
metascan design optimize --model surrogate "${small[@]}" --method surrogate --output rs_plain.h5
metascan design optimize --model surrogate "${small[@]}" --method surrogate --robust 4 \
    --output rs_robust.h5
metascan design optimize --model "$run" "${small[@]}" --method pso --probes "$probes" \
    --output s_free.h5
metascan design optimize --model "$run" "${small[@]}" --method pso --probes "$probes" \
    --support-penalty 5 --output s_pen.h5
for m in r_plain r_robust rs_plain rs_robust; do
    metascan design evaluate --designs $m.h5 --targets targets200.h5 --world "$pairs" \
        --dilation-sd-nm 10 --fabrications 8 --output "eval_${m}_fab10" --no-progress --force
    metascan design evaluate --designs $m.h5 --targets targets200.h5 --world "$pairs" \
        --output "eval_${m}_nominal" --no-progress --force
done
for m in s_free s_pen; do
    metascan design evaluate --designs $m.h5 --targets targets200.h5 --world "$pairs" \
        --output "eval_$m" --no-progress --force
done
