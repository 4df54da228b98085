#!/usr/bin/env bash
# RealNet head="conv" vs head="mlp", 15 epochs, epoch chosen on the validation suite (val_split=suite).
# Usage: PYTHON=/work/main/.venv/bin/python PYTHONPATH=$PWD run_realnet.sh WORKDIR SEED...  (model files in WORKDIR, not committed)
set -euo pipefail
work=$1; shift
mkdir -p "$work"
for seed in "$@"; do
  for data in mvtec_ad/bottle mpdd/metal_plate; do
    for head in conv mlp; do
      out="$work/$(basename $data)-s$seed-$head.pt"
      [ -f "$out" ] && continue
      flock /tmp/timing.lock /usr/bin/time -v -o "$out.time" \
        "${PYTHON:-python}" -c "import sys; from defectkit.cli import main; sys.exit(main())" \
        train --method realnet --data ../shared/data/$data --seed "$seed" \
        --param epochs=15 --param head=$head --param val_split=suite --out "$out" > "$out.log" 2>&1
      echo "$(date -u +%T) done $out"
    done
  done
done
