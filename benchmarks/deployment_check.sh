#!/usr/bin/env bash
# The deployment checks of all five methods in one run (a benchmark, not a test):
# train on a category, export with the parity check, score its test set through the
# runtime and through torch (metrics, held-out normals flagged at the stored threshold,
# good/defect confusion), then `defectkit speed` for every method one after the other.
#
#   benchmarks/deployment_check.sh DATA WORK OUT [EPOCHS]
#
# DATA: an MVTec-layout category (e.g. ../shared/data/mvtec_ad/bottle); WORK: a scratch
# folder for the model files (not committed); OUT: the results folder. SimpleNet and
# PatchCore train with their defaults; PRN, MLFF and RealNet with EPOCHS epochs (default
# 3: parity and speed are properties of the graph, not of the weights, and their full
# fits take 10-30 minutes each). Seed 0. Run it alone on the machine: speeds are compared
# as ratios within this run.
set -euo pipefail
DATA=${1:?DATA}; WORK=${2:?WORK}; OUT=${3:?OUT}; EPOCHS=${4:-3}
mkdir -p "$WORK" "$OUT"
METHODS="patchcore simplenet prn mlff realnet"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/run.log"; }
for m in $METHODS; do
  extra=()
  case $m in prn|mlff|realnet) extra=(--param "epochs=$EPOCHS") ;; esac
  log "train $m ${extra[*]:-(defaults)}"
  start=$(date +%s)
  defectkit train --method "$m" --data "$DATA" --seed 0 "${extra[@]}" --out "$WORK/$m.pt" --force \
    > "$OUT/$m-train.log" 2>&1
  log "train $m: $(( $(date +%s) - start )) s"
  defectkit export --model "$WORK/$m.pt" --out "$WORK/$m.onnx" --force 2>&1 | grep -v torchvision \
    > "$OUT/$m-export.log"
  cp "$WORK/$m.parity.json" "$OUT/$m.parity.json"
  log "export $m: $(grep -m1 '^parity' "$OUT/$m-export.log")"
done
log "runtime check (test set, both engines)"
python benchmarks/onnx_runtime_check.py --models "$WORK" --data "$DATA" --methods $METHODS --out "$OUT/runtime-check" \
  > "$OUT/runtime-check.log" 2>&1
for m in $METHODS; do
  log "speed $m, load $(cut -d' ' -f1-3 /proc/loadavg)"
  defectkit speed --model "$WORK/$m.onnx" --torch-model "$WORK/$m.pt" --input "$DATA/train/good" \
    --repeats 3 --out "$OUT/speed-$m" --force > "$OUT/speed-$m.log" 2>&1
  grep -E "graph|end to end" "$OUT/speed-$m.log" | tee -a "$OUT/run.log"
done
log "done"
