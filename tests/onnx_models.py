"""One tiny exported ``.onnx`` model shared by the test modules that need it (an export traces the
whole model, so it is made once per test session, not once per module)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

_MADE: Dict[str, Tuple[Path, Path]] = {}


def tiny_onnx_model(tmp_path_factory) -> Tuple[Path, Path]:
    """-> (demo category folder, exported PatchCore ``parts.onnx``): 64 px, 6 training images, exported by the CLI."""
    if "parts" not in _MADE:
        from defectkit.cli import main
        from defectkit.data import load_dataset, make_demo_dataset
        from defectkit.models.factory import build_model

        root = tmp_path_factory.mktemp("onnx-model")
        data = make_demo_dataset(root / "data", seed=0, n_train=6, n_test_good=1, n_test_defect=3, size=64)
        pt = root / "parts.pt"
        build_model("patchcore", None, image_size=64, device="cpu", use_cache=False).fit(
            load_dataset(data), progress=False
        ).save(pt)
        onnx_path = root / "parts.onnx"
        assert main(["export", "--model", str(pt), "--out", str(onnx_path)]) == 0
        _MADE["parts"] = (data, onnx_path)
    return _MADE["parts"]
