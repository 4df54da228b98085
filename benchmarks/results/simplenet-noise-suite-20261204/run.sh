set -e
cd "$(dirname "$0")/../../.."
for cat in mvtec_ad/bottle mpdd/metal_plate; do
  name=$(basename $cat)
  .venv/bin/python benchmarks/simplenet_head_validation.py --data ../shared/data/$cat --seeds 0 1     --candidates '{}' '{"noise_levels": 3}' '{"feature_std": 0.3}' '{"feature_std": 0.3, "noise_levels": 3}'     --no-replay --out "${OUT:-/tmp/simplenet-noise-suite}/$name"
done
