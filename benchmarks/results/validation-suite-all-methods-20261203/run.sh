#!/usr/bin/env bash
# The six fits of this record, one after another, each under the shared timing lock.
# Run from the worktree root; model files go to /tmp/suite-all (not committed).
set -euo pipefail
export PYTHONPATH=$PWD
DK=/work/main/.venv/bin/defectkit
DATA=/work/shared/data/mvtec_ad/bottle
OUT=/tmp/suite-all
mkdir -p "$OUT"
run() {  # name, then the extra arguments
  local name=$1; shift
  /usr/bin/time -f "$name wall %e s, max RSS %M KB" \
    flock /tmp/timing.lock "$DK" train --data "$DATA" --seed 0 --out "$OUT/$name.pt" --force "$@"
}
run simplenet-own   --method simplenet --param val_split=own
run simplenet-suite --method simplenet --param val_split=suite
run prn-own         --method prn  --param epochs=2 --param val_split=own
run prn-suite       --method prn  --param epochs=2 --param val_split=suite
run mlff-own        --method mlff --param epochs=2 --param val_split=own
run mlff-suite      --method mlff --param epochs=2 --param val_split=suite
