"""Why RealNet's export can fail parity: near-ties in the RRS ranking of its check images.

Usage (from the repository root): python rrs_margins.py MODEL.pt. For each check image the
export uses (held-out normals named in the model file), the smallest relative gap between
consecutive values among the top n_max + 1 channels by global max, and among the top
n_mean + 1 by global mean, of the normalised residuals. The selected channels enter the
decoder in ranking order, so a gap near float precision (about 1e-6 between the two
engines) lets the order flip between torch and ONNX Runtime.
"""

import sys

import torch

from defectkit.data.batches import load_images
from defectkit.export.onnx_export import check_images
from defectkit.models import load_model
from defectkit.models.realnet.rrs import stage_residuals


def main(path):
    model = load_model(path, device="cpu")
    paths, _ = check_images(model, None)
    x = load_images(paths, model.preprocess)[0]
    with torch.no_grad():
        feats = model._select(model.feature_extractor(model._stages).run_backbone(x))
        recon = {s: model.recon_nets_[str(s)](feats[s]) for s in model._stages}
        z = model.selector_.bn(stage_residuals(feats, recon)).flatten(2)
    sel = model.selector_
    for name, stat, k in (("max", z.amax(2), sel.n_max), ("mean", z.mean(2), sel.n_mean)):
        top = torch.sort(stat, dim=1, descending=True).values[:, : k + 1]
        gap = (top[:, :-1] - top[:, 1:]) / top[:, :-1].abs().clamp_min(1e-12)
        print(f"top {k} by {name}: smallest relative gap per image", [f"{g:.1e}" for g in gap.min(1).values.tolist()])


if __name__ == "__main__":
    main(sys.argv[1])
