#!/usr/bin/env bash
# Two local Ray nodes (head + worker, 1 CPU each): a grid across both, a kill and --resume,
# then predict over 5,000 images with one node and with two (timed under /tmp/timing.lock).
# Usage: benchmarks/ray_two_nodes.sh [RESULTS_DIR]   (default benchmarks/results/ray-<date>)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
results="${1:-benchmarks/results/ray-$(date -u +%Y%m%d)}"
work="$(mktemp -d /tmp/defectkit-ray-XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$results"
uptime | tee "$results/uptime-grid.txt"
nice -n 15 python benchmarks/ray_two_nodes.py grid --work "$work" --results "$results"
uptime | tee "$results/uptime-predict.txt"
flock /tmp/timing.lock python benchmarks/ray_two_nodes.py predict --work "$work" --results "$results"
uptime | tee -a "$results/uptime-predict.txt"
