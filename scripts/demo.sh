#!/usr/bin/env bash
# The end-to-end demo on the simulated bench; grows with every stage.
# Today: design library -> chip layout with replicas + manifest -> KLayout DRC -> previews -> summary,
# then the simulated bench: every driver against its emulator, in-process and over 127.0.0.1 TCP,
# frames the virtual microscope renders (previews), the scan plan's dry run, then a whole scan of the
# chip (hypercubes, quick-looks) -> per-pad spectra -> curated pairs with a report, checked against
# the virtual chip's ground truth -> a small contrastive model trained on those pairs and evaluated
# against the oracle of the chip's noise-free spectra (JSON and PNGs in runs/chip) -> inverse design:
# a probe database from that model, retrieval for test spectra and filters, judged on the simulated
# bench against the oracle, spectra prediction, and the chosen designs written as a new chip ->
# closing the loop: a logo and the test spectra designed as chips, fabricated, scanned, compared.
set -euo pipefail
out="${1:-demo_out}"
mkdir -p "$out"
# The chip is MOCLIP's film: 178 nm (one of its 150, 178 and 195 nm chips) of LPCVD amorphous
# silicon, the default --material a-Si, which the manifest records and every later file carries.
metascan layout generate --count 2000 --seed 7 --output "$out/designs.h5" --force
metascan layout chip --designs "$out/designs.h5" --arrays 3 --rows 20 --cols 20 --replicas 2 \
    --thickness-nm 178 --output "$out/chip.gds" --force
metascan layout chip --designs "$out/designs.h5" --arrays 3 --rows 20 --cols 20 --replicas 2 \
    --thickness-nm 178 --format oas --output "$out/chip_oasis.oas" --force
metascan layout drc "$out/chip.gds"
metascan layout preview --designs "$out/designs.h5" --manifest "$out/chip.h5" --output "$out" --force
echo "--- simulated bench, in-process emulators ---"
metascan instruments check --config configs/sim-bench.toml
echo "--- simulated bench over TCP (metascan sim serve) ---"
metascan sim serve --config configs/sim-bench-tcp.toml --duration-s 120 >"$out/serve.log" 2>&1 &
serve_pid=$!
trap 'kill $serve_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q '^serving' "$out/serve.log" && break; sleep 0.1; done
cat "$out/serve.log"
metascan instruments check --config configs/sim-bench-tcp.toml
kill "$serve_pid"
echo "--- virtual microscope: a rendered frame, false-colour RGB and measured vs true spectra ---"
metascan sim preview --manifest "$out/chip.h5" --output "$out/previews" --force
echo "--- scan plan on the simulated bench: validated and timed, nothing moves ---"
metascan scan --config configs/sim-bench.toml --manifest "$out/chip.h5" --output "$out/scans" --dry-run
# The demo's bench: configs/sim-bench.toml with the devices at 1/1000 of real time (the real-time
# figures are benchmarks/bench_acquisition.py's), in-process cameras, and defects planted on one
# replica (1 % of pads missing, 1 % contaminated) for curation to find.
sed -e 's/^time_scale = 1.0 /time_scale = 0.001/' -e 's/^settle_s = 0.05$/settle_s = 0.0/' \
    configs/sim-bench.toml >"$out/bench-fast.toml"
cat >>"$out/bench-fast.toml" <<'TOML'

[simulation.microscope]
camera_feed = "direct"
fabrication = { missing_fraction = 0.01, contamination_fraction = 0.01 }
TOML
echo "--- virtual chip: passband-averaged ground truth of every pad the bench will image ---"
metascan sim truth --manifest "$out/chip.h5" --config "$out/bench-fast.toml" --output "$out/truth.h5" --force
echo "--- scan every array (replicas included): flat, darks, 29 bands x 2 polarisations per tile ---"
rm -rf "$out/scans"
metascan scan --config "$out/bench-fast.toml" --manifest "$out/chip.h5" --output "$out/scans" --no-progress
ls "$out/scans/quicklook"
echo "--- per-pad spectra from the hypercubes, then replicas cross-checked into training pairs ---"
rm -rf "$out/spectra"
metascan process "$out/scans" --manifest "$out/chip.h5" --output "$out/spectra"
metascan curate "$out/spectra" --manifest "$out/chip.h5" --output "$out/chip_pairs.h5" --force
echo "--- contrastive model: train metascan-small on the curated chip pairs (CPU, a few minutes) ---"
rm -rf "$out/runs/chip"
mkdir -p "$out/runs"
metascan train --pairs "$out/chip_pairs.h5" --config metascan-small --epochs 40 --batch-size 64 \
    --output "$out/runs/chip" --no-progress
echo "--- evaluate on the test designs; the oracle retrieves by the chip's noise-free spectra ---"
metascan evaluate --model "$out/runs/chip" --pairs "$out/chip_pairs.h5" --truth "$out/truth.h5"
ls "$out/runs/chip"/*.png
echo "--- inverse design: a probe database from the chip's model, retrieval for test spectra and filters ---"
# The model learned from the chip's 178 nm film, so its probes are 178 nm too; the chip's own
# designs are left out, so every answer is a design the model has never seen measured.
d="$out/design"
rm -rf "$d"
mkdir -p "$d"
metascan design targets --model "$out/runs/chip" --pairs "$out/chip_pairs.h5" --split test \
    --limit 24 --output "$d/targets.h5"
metascan design targets --model "$out/runs/chip" --filter "bandpass x 600 60 0.6" \
    --filter "longpass both 620 60 0.6" --output "$d/filters.h5"
metascan design probes --model "$out/runs/chip" --count 20000 --seed 1 --thicknesses 178 \
    --exclude "$out/chip.h5" --output "$d/probes.h5" --no-progress
metascan design retrieve --model "$out/runs/chip" --probes "$d/probes.h5" --targets "$d/targets.h5" \
    --top-k 3 --database-sizes 100,1000,10000 --output "$d/chosen.h5"
# Filters care only about some bands: the shortlist is re-ranked by the weighted MSE of each
# probe's spectrum as predicted from the chip's measured training spectra.
metascan design retrieve --model "$out/runs/chip" --probes "$d/probes.h5" --targets "$d/filters.h5" \
    --top-k 3 --spectra-db "$out/chip_pairs.h5" --shortlist 1000 --output "$d/chosen_filters.h5"
echo "--- judged on the simulated bench: the chip's fabrication and passband, beside oracle and random ---"
metascan design evaluate --designs "$d/chosen.h5" --targets "$d/targets.h5" --world "$out/truth.h5" \
    --probes "$d/probes.h5" --output "$d/evaluation" --no-progress
metascan design evaluate --designs "$d/chosen_filters.h5" --targets "$d/filters.h5" \
    --world "$out/truth.h5" --probes "$d/probes.h5" --output "$d/evaluation_filters" --no-progress
echo "--- optimization: hybrid = PSO warm-started from each target's most similar probes, then gradient steps through a soft raster ---"
# database_size in the evaluation = encoder calls per target so far (particles x iteration; a
# gradient step counts 3), so the rows compare with the retrieval's at as many encoder calls.
metascan design optimize --model "$out/runs/chip" --targets "$d/targets.h5" --thicknesses 178 \
    --method hybrid --iterations 10 --particles 50 --steps 40 --record-iterations 2,5 \
    --probes "$d/probes.h5" --output "$d/optimized.h5" --no-progress
metascan design evaluate --designs "$d/optimized.h5" --targets "$d/targets.h5" \
    --world "$out/truth.h5" --probes "$d/probes.h5" --output "$d/evaluation_optimized" --no-progress
echo "--- forward surrogate: the same harness learns geometry -> spectra; PSO on its predicted MSE ---"
rm -rf "$out/runs/surrogate"
metascan train --pairs "$out/chip_pairs.h5" --config metascan-small --task surrogate --epochs 40 \
    --batch-size 64 --output "$out/runs/surrogate" --no-progress
metascan evaluate --model "$out/runs/surrogate" --pairs "$out/chip_pairs.h5" --truth "$out/truth.h5"
metascan design optimize --model "$out/runs/surrogate" --targets "$d/targets.h5" --thicknesses 178 \
    --method surrogate --iterations 10 --particles 50 --record-iterations 2,5 \
    --output "$d/optimized_surrogate.h5" --no-progress
metascan design evaluate --designs "$d/optimized_surrogate.h5" --targets "$d/targets.h5" \
    --world "$out/truth.h5" --output "$d/evaluation_surrogate" --no-progress
echo "--- the methods side by side: measured MSE against network calls per target (MOCLIP Fig. 6f) ---"
metascan design compare --evaluation "retrieval=$d/evaluation" \
    --evaluation "hybrid=$d/evaluation_optimized" --evaluation "surrogate=$d/evaluation_surrogate" \
    --particles 50 --output "$d/compare"
echo "--- zero-shot spectra prediction of the test designs from the measured training spectra ---"
metascan design predict --model "$out/runs/chip" --designs "$out/chip_pairs.h5" \
    --spectra-db "$out/chip_pairs.h5" --output "$d/predicted.h5"
echo "--- the hybrid's designs (each target's final one first), written as a chip for the next round ---"
metascan layout chip --designs "$d/optimized.h5" --arrays 1 --rows 4 --cols 6 --replicas 2 \
    --companion 0 --thickness-nm 178 --output "$d/inverse_chip.gds"
metascan layout drc "$d/inverse_chip.gds"
echo "--- closing the loop: a logo the demo draws, printed in structural colour (CIEDE2000 under the bench lamp) ---"
python scripts/draw_logo.py "$d/logo.png"
metascan design chip --targets "$d/logo.png" --model "$out/runs/chip" --probes "$d/probes.h5" \
    --surrogate "$out/runs/surrogate" --spectra-db "$out/chip_pairs.h5" --method hybrid \
    --iterations 10 --particles 50 --thickness-nm 178 --chip-id logo --output "$d/logo_chip.gds" \
    --no-progress
metascan layout drc "$d/logo_chip.gds"
echo "--- the same logo over a 10 mm wafer of 5 µm pads (OASIS + manifest streamed tile by tile) ---"
metascan design chip --targets "$d/logo.png" --model "$out/runs/chip" --probes "$d/probes.h5" \
    --spectra-db "$out/chip_pairs.h5" --thickness-nm 178 --pad-size-um 5 --wafer-mm 10 \
    --chip-id logo_wafer --output "$d/logo_wafer.oas" --no-progress
echo "--- the logo chip fabricated (bias, dilation, defects) and scanned on the simulated bench, then compared ---"
metascan sim truth --manifest "$d/logo_chip.h5" --config "$out/bench-fast.toml" \
    --output "$d/logo_truth.h5" --force
metascan scan --config "$out/bench-fast.toml" --manifest "$d/logo_chip.h5" --output "$d/logo_scans" \
    --no-progress
metascan process "$d/logo_scans" --manifest "$d/logo_chip.h5" --output "$d/logo_spectra"
metascan design report --chip "$d/logo_chip.h5" --spectra "$d/logo_spectra" --output "$d/logo_report"
echo "--- the same loop for spectral targets: the 24 test spectra as a 4x6 chip, weighted MSE measured ---"
metascan design chip --targets "$d/targets.h5" --cols 6 --model "$out/runs/chip" \
    --probes "$d/probes.h5" --surrogate "$out/runs/surrogate" --spectra-db "$out/chip_pairs.h5" \
    --method hybrid --iterations 10 --particles 50 --thickness-nm 178 --chip-id spectra \
    --output "$d/spectra_chip.gds" --no-progress
metascan sim truth --manifest "$d/spectra_chip.h5" --config "$out/bench-fast.toml" \
    --output "$d/spectra_truth.h5" --force
metascan scan --config "$out/bench-fast.toml" --manifest "$d/spectra_chip.h5" \
    --output "$d/spectra_scans" --no-progress
metascan process "$d/spectra_scans" --manifest "$d/spectra_chip.h5" --output "$d/spectra_spectra"
metascan design report --chip "$d/spectra_chip.h5" --spectra "$d/spectra_spectra" \
    --output "$d/spectra_report"
echo "--- synthetic pairs straight from the analytic spectral model (what benchmarks train on) ---"
metascan sim pairs --count 2000 --seed 7 --replicas 2 --noise 0.01 --output "$out/pairs.h5" --force
echo "--- summary ---"
metascan layout info "$out/chip.h5"
echo "files:"
ls -l "$out"
